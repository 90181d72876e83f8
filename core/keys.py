"""Every Redis key and queue name the service uses, in one place, under one prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "shopsync"

    # queues (arq sorted sets)
    @property
    def realtime_queue(self) -> str:
        return f"{self.prefix}:queue:realtime"

    @property
    def fullsync_queue(self) -> str:
        return f"{self.prefix}:queue:fullsync"

    @property
    def apply_queue(self) -> str:
        """Deferred apply-customer jobs (worker/coalesce.py): APSIS-bound, so their own job slots."""
        return f"{self.prefix}:queue:apply"

    @property
    def queues(self) -> tuple[str, ...]:
        """Every arq queue the workers serve: status, `shopsync jobs`, metrics and clean-ups."""
        return (self.realtime_queue, self.apply_queue, self.fullsync_queue, self.audit_queue)

    def dedup(self, shop: str, webhook_id: str) -> str:
        return f"{self.dedup_prefix}{shop}:{webhook_id}"

    @property
    def dedup_prefix(self) -> str:
        return f"{self.prefix}:dedup:"

    @property
    def dead_letters(self) -> str:
        """Hash job id -> dead letter JSON."""
        return f"{self.prefix}:dead-letters"

    @property
    def dead_letter_index(self) -> str:
        """Sorted set of dead-letter job ids by time of death."""
        return f"{self.prefix}:dead-letters:index"

    @property
    def failures(self) -> str:
        """Sorted set of recent failures (capped), member = JSON, score = time."""
        return f"{self.prefix}:failures"

    @property
    def counters(self) -> str:
        """Hash of monotonically increasing counters shared by all processes (metrics)."""
        return f"{self.prefix}:counters"

    def customer_state(self, shop: str, customer_id: str | int) -> str:
        return f"{self.prefix}:state:{shop}:{customer_id}"

    def customer_lock(self, shop: str, customer_id: str | int) -> str:
        return f"{self.prefix}:lock:{shop}:{customer_id}"

    def customer_apply(self, shop: str, customer_id: str | int) -> str:
        """The id of the customer's one scheduled "apply customer" job (worker/coalesce.py)."""
        return f"{self.prefix}:apply:{shop}:{customer_id}"

    def customer_burst(self, shop: str, customer_id: str | int) -> str:
        """Set while a customer's updates arrive behind a backlog: its next one merges
        (worker/coalesce.py); it lapses after about the backlog's wait."""
        return f"{self.prefix}:burst:{shop}:{customer_id}"

    def shop_customers(self, shop: str) -> str:
        """Set of customer ids with state, so a shop's state can be removed without KEYS."""
        return f"{self.prefix}:customers:{shop}"

    def limiter(self, name: str) -> str:
        return f"{self.prefix}:limit:{name}"

    def token(self, client_id: str) -> str:
        return f"{self.prefix}:apsis-token:{client_id}"

    def address_attributes(self, shop: str) -> str:
        """JSON: per section, the version ids of the email/mobile attributes (APSIS definitions)."""
        return f"{self.prefix}:address-attributes:{shop}"

    def suppressed(self, shop: str) -> str:
        """Hash customer id -> JSON of the profile's suppressed channels (APSIS suppression)."""
        return f"{self.prefix}:suppressed:{shop}"

    def full_sync(self, shop: str) -> str:
        return f"{self.prefix}:fullsync:{shop}"

    def audit(self, shop: str) -> str:
        """JSON: the last drift audit's counts and time (`shopsync audit`, worker/audit.py)."""
        return f"{self.prefix}:audit:{shop}"

    @property
    def audit_queue(self) -> str:
        """Scheduled drift audits (worker/audit_schedule.py): long, low-priority jobs on their own
        queue, so their long timeout never delays the re-run of a killed worker's full-sync jobs."""
        return f"{self.prefix}:queue:audit"

    def audit_lease(self, shop: str) -> str:
        """The running audit's holder id, with a renewed expiry: one scheduled audit per shop at once."""
        return f"{self.prefix}:audit-lease:{shop}"

    def audit_queued(self, shop: str) -> str:
        """Set while a scheduled audit job of the shop waits in the audit queue (no second enqueue)."""
        return f"{self.prefix}:audit-queued:{shop}"

    def audit_schedule(self, shop: str) -> str:
        """Hash: the scheduled audit's last start, end and failure (times, error line)."""
        return f"{self.prefix}:audit-schedule:{shop}"

    def audit_report(self, shop: str, run: str, n: int) -> str:
        """Hash profile key -> JSON row: the n-th APSIS consent report of an audit run, staged."""
        return f"{self.prefix}:audit-run:{shop}:{run}:report:{n}"

    def audit_seen(self, shop: str, run: str) -> str:
        """Set: the customer ids an audit run's walk of the store has seen."""
        return f"{self.prefix}:audit-run:{shop}:{run}:seen"

    def audit_left(self, shop: str, run: str) -> str:
        """Set: ids APSIS or the sync state knows that an audit run's walk did not see."""
        return f"{self.prefix}:audit-run:{shop}:{run}:left"

    def product(self, shop: str, product_id: str | int) -> str:
        return f"{self.prefix}:product:{shop}:{product_id}"

    def order_sent(self, shop: str, order_id: str | int, kind: str) -> str:
        return f"{self.prefix}:order-sent:{shop}:{order_id}:{kind}"

    @property
    def uninstalled(self) -> str:
        """Set of shop domains that asked to stop syncing (app/uninstalled, shop/redact)."""
        return f"{self.prefix}:uninstalled"

    @property
    def workers(self) -> str:
        """Sorted set of worker process ids by last heartbeat (seconds since the epoch)."""
        return f"{self.prefix}:workers"

    @property
    def full_syncs(self) -> str:
        """Sorted set of full-sync ids by start time (for status and history)."""
        return f"{self.prefix}:fullsyncs"

    def full_sync_record(self, sync_id: str) -> str:
        return f"{self.prefix}:fullsync-run:{sync_id}"

    def full_sync_import(self, sync_id: str) -> str:
        """Prefix of a full sync's import state (worker/fullsync/import_files.py): `:files` hash
        file number -> file JSON, `:file:{n}` the CSV, `:rows:{n}` hash customer id -> expected state."""
        return f"{self.prefix}:fullsync-run:{sync_id}:import"

    def apsis_import_slots(self, client_id: str) -> str:
        """Sorted set of the APSIS account's pending imports (member: sync and file, score: the
        lease's expiry): at most 3 pending per account, shared by every shop using it."""
        return f"{self.prefix}:apsis-import-slots:{client_id}"

    # Shopify access tokens (core/shopify_auth/)
    def shopify_token(self, shop: str) -> str:
        """The shop's token pair (`TokenRecord` JSON, Fernet-encrypted): one value, one write."""
        return f"{self.prefix}:shopify-token:{shop}"

    def shopify_token_lock(self, shop: str) -> str:
        """`<fence>:<holder>` while one process mints or refreshes the shop's token (PX)."""
        return f"{self.prefix}:shopify-token-lock:{shop}"

    def shopify_token_fence(self, shop: str) -> str:
        """Counter: the fencing token of the latest lock; a store by an older holder is refused."""
        return f"{self.prefix}:shopify-token-fence:{shop}"

    def oauth_state(self, state: str) -> str:
        """The shop (and public origin) an OAuth install's single-use `state` was issued for (EX)."""
        return f"{self.prefix}:oauth-state:{state}"

    @property
    def needs_approval(self) -> str:
        """Hash shop domain -> reason: shops whose token cannot be had until the merchant approves."""
        return f"{self.prefix}:needs-approval"

    def held_jobs(self, shop: str) -> str:
        """Hash job id -> held job JSON: jobs of a shop that needs approval, run once it is back."""
        return f"{self.prefix}:held:{shop}"

    @property
    def held_shops(self) -> str:
        """Set of shop domains with held jobs."""
        return f"{self.prefix}:held-shops"

    def shopify_bulk_slots(self, shop: str) -> str:
        """Sorted set holder -> lease expiry (ms, Redis clock): the shop's bulk-operation slots in
        use by the pool (worker/shopify_bulk_slots.py); at most the version's limit at once."""
        return f"{self.prefix}:shopify-bulk-slots:{shop}"

    def shopify_reconnect_probe(self, shop: str) -> str:
        """Set NX EX while one process tries to reconnect a client-credentials shop (one try a period)."""
        return f"{self.prefix}:shopify-reconnect:{shop}"

    @property
    def metrics(self) -> str:
        """Hash of metric series -> value that every worker process adds to."""
        return f"{self.prefix}:metrics"

    # Many shops on one deployment (issue 17): the fair full-sync dispatcher, per-shop backoff.
    def fair_ready(self, shop: str) -> str:
        """List of the shop's full-sync batch job ids written and waiting for a dispatch slot."""
        return f"{self.prefix}:fair:ready:{shop}"

    @property
    def fair_shops(self) -> str:
        """Set of shops whose ready list may hold batch jobs (the dispatcher's round)."""
        return f"{self.prefix}:fair:shops"

    @property
    def fair_weights(self) -> str:
        """Hash shop -> weight of the shops in the installations file (absent: parked)."""
        return f"{self.prefix}:fair:weights"

    @property
    def fair_credit(self) -> str:
        """Hash shop -> its running credit in the smooth weighted round-robin."""
        return f"{self.prefix}:fair:credit"

    @property
    def fair_inflight(self) -> str:
        """Set of dispatched batch job ids still in the full-sync queue."""
        return f"{self.prefix}:fair:inflight"

    @property
    def realtime_behind(self) -> str:
        """Set (expiring) while webhook jobs start late: the dispatcher then lets one full-sync
        batch at a time through, one every `fair_dispatch.BEHIND_EVERY_S` (worker/realtime_lag.py)."""
        return f"{self.prefix}:fair:realtime-behind"

    @property
    def realtime_behind_next(self) -> str:
        """While real-time is behind: the time (ms) before which the dispatcher sends no batch."""
        return f"{self.realtime_behind}:next"

    def shop_backoff(self, shop: str) -> str:
        """Hash: the shop's backoff (open until, period, reason, opened at) while its APIs fail."""
        return f"{self.prefix}:backoff:{shop}"

    @property
    def backoff_shops(self) -> str:
        """Set of shops with a backoff record."""
        return f"{self.prefix}:backoff-shops"

    @property
    def shop_errors(self) -> str:
        """Hash shop -> JSON of its last API or job error (status pages)."""
        return f"{self.prefix}:shop-errors"
