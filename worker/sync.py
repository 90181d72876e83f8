"""Applying customer updates to APSIS: the imperative shell around `mappings.plan`.

`submit` is what every job calls: it deposits one update for a customer (see
`worker.customer_store`) and drives the customer's pending updates until its own is applied.
`apply_pending` is the one place that talks to APSIS for customer data: under the customer's
lock it folds every pending update, oldest first, through the pure planner, merges their writes
(so a burst becomes one patch per section), sends them, then saves the new state and drops the
applied updates in one transaction. Any failure leaves everything pending for the retry.

One failure is handled apart: the read of the whole customer that an update with fields never
known calls for (see `FETCH_OWED`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from core.logging import mask_email, mask_phone
from mappings.installation import Shop
from mappings.normalize import normalize_customer, normalize_topic
from mappings.normalize_graphql import normalize_bulk_customer
from mappings.plan import Plan, needs_old_address_topics, plan_sync, unknown_paths
from mappings.snapshot import CustomerSnapshot, PayloadError, TagsChange
from mappings.state import SyncState
from mappings.writes import (
    OPT_IN,
    AddressList,
    AttributePatch,
    ConsentType,
    ConsentWrite,
    ProfileDelete,
    Write,
)
from worker.context import WorkerContext
from worker.customer_store import LOCK_TTL_MS, LockLostError
from worker.errors import ApiError
from worker.ratelimit import WaitTooLongError
from worker.runtime import TransientError

log = structlog.get_logger("worker.sync")

Source = Literal["webhook", "fullsync", "resync", "reconcile", "order"]
Outcome = Literal["written", "unchanged", "stale", "skipped", "deleted", "elsewhere"]
DRIVE_BUDGET_S = 20.0
# Attribute patches of one customer are at most one per this many seconds after the first: a
# burst of edits becomes one write now and one with everything else a moment later. Consent-only
# changes are never held back.
PATCH_INTERVAL_S = 1.0
_PATCHED = "attributes_patched_at"
# A read of the whole customer that an apply needed (fields deciding membership or attributes
# never known) and could not do (Shopify answering 429, unreachable): the mark, kept with the
# state, holds the time of the first failure. Why not fail the apply and keep every update
# pending: the customer's other updates (an opt-out, say) would wait for Shopify too. Why not let
# a later snapshot fill the fields: the full sync's snapshot of the customer is usually older
# than the update (read before it), so stale as a whole, and a field it has may have changed
# since (a tags change is itself a trimmed `customers/update`). So what is known is applied and
# saved, and the read is owed: every later apply of the customer whose updates leave the fields
# unknown, whatever their source (the full sync's stale snapshot, or nothing pending at all),
# reads the customer. The mark goes once a read succeeds or nothing is left unknown.
# For `FETCH_RETRY_S` after the first failure the apply also ends in a TransientError once
# saved, so its job retries with backoff even if nothing else touches the customer. Past that,
# the customer's later updates no longer wait behind those retries (an apply job's retry holds
# the deposits that join it): the next touch, or the hourly reconciliation (its page of a
# customer updated since the last walk is current, so it fills the fields), brings them.
FETCH_OWED = "fetch_owed"
FETCH_RETRY_S = 300.0
# Paths whose absence makes a fetch of the whole customer worth its Shopify call: the ones that
# decide membership and attribute values. Consent paths are not in it: 2025-01 payloads lack
# them by design and the consent topics (and the hourly reconciliation) bring them.
_FAMILIES = {
    "customers_email_marketing_consent/update": "email_consent",
    "customers_marketing_consent/update": "sms_consent",
    "customer.tags_added": "tags",
    "customer.tags_removed": "tags",
}
_CONSENT_PATHS = (
    "email_marketing_consent",
    "sms_marketing_consent",
    "accepts_marketing",
    "marketing_opt_in_level",
)


@dataclass(frozen=True, slots=True)
class Update:
    """One update for a customer as deposited in Redis (JSON-friendly)."""

    kind: Literal["topic", "rest", "bulk"]
    payload: dict[str, Any]
    received_at: float
    topic: str = ""
    source: Source = "webhook"
    force: bool = False
    triggered_at: float | None = None  # X-Shopify-Triggered-At, when the delivery had one

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "payload": self.payload,
            "received_at": self.received_at,
            "source": self.source,
            "force": self.force,
            "triggered_at": self.triggered_at,
        }

    @property
    def family(self) -> str:
        """Updates of one family carry the same fields; trigger times are compared within one."""
        if self.kind != "topic":
            return "customer"
        return _FAMILIES.get(self.topic, "customer")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Update:
        return cls(
            kind=data["kind"],
            payload=data["payload"],
            received_at=float(data["received_at"]),
            topic=data.get("topic", ""),
            source=data.get("source", "webhook"),
            force=bool(data.get("force", False)),
            triggered_at=data.get("triggered_at"),
        )

    def normalized(self) -> CustomerSnapshot | TagsChange:
        """Raises PayloadError for a payload the mapping cannot handle."""
        if self.kind == "topic":
            return normalize_topic(self.topic, self.payload)
        if self.kind == "bulk":
            return normalize_bulk_customer(self.payload)
        return normalize_customer(self.payload)


def customer_of(update: CustomerSnapshot | TagsChange) -> int:
    return update.customer_id if isinstance(update, TagsChange) else update.id


@dataclass
class Applied:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    writes: int = 0
    hold_s: float = 0.0  # > 0: nothing was sent; patch again after this long
    received_at: dict[str, float] = field(default_factory=dict)  # update id -> its received_at
    fetch_failed: str | None = None  # saved without a read of the customer it needed: retry


async def submit(
    app: WorkerContext,
    shop: Shop,
    update_id: str,
    update: Update,
    *,
    budget_s: float = DRIVE_BUDGET_S,
    deposited: bool = False,
) -> Outcome:
    """Deposit `update` (unless the caller already did: worker/coalesce.py) and see it applied
    (by this worker or another). Transient on timeout."""
    customer_id = customer_of(update.normalized())  # a poison payload fails here, before Redis
    store = app.customers
    if not deposited:
        await store.deposit(shop.domain, customer_id, update_id, update.to_dict())
    deadline = time.monotonic() + budget_s
    delay = 0.01
    while True:
        applied = await apply_pending(app, shop, customer_id)
        if applied is not None and update_id in applied.outcomes:
            return applied.outcomes[update_id]
        if not await store.is_pending(shop.domain, customer_id, update_id):
            return "elsewhere"  # another worker applied it together with its own
        if time.monotonic() > deadline:
            raise TransientError(f"customer {customer_id} busy for {budget_s:.0f} s")
        await asyncio.sleep(delay + random.uniform(0, delay))
        delay = min(delay * 2, 0.2)


class _Held:
    """A customer's lock while this worker holds it, renewed in the background so a slow apply
    (APSIS retrying, a rate-limit wait) never outlives it; `check()` says whether it was lost."""

    def __init__(self, app: WorkerContext, shop: Shop, customer_id: int, token: str) -> None:
        self.store, self.shop, self.customer_id, self.token = app.customers, shop.domain, customer_id, token
        self.lost = False
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            try:
                if not await self.store.renew(self.shop, self.customer_id, self.token):
                    self.lost = True
                    return
            except Exception as exc:  # Redis unreachable: the next check or the save will tell
                log.warning("customer_lock_renewal_failed", customer_id=self.customer_id, error=str(exc))

    def check(self) -> None:
        if self.lost:
            raise TransientError(f"customer {self.customer_id}: lock lost; the update stays pending")

    async def release(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.store.unlock(self.shop, self.customer_id, self.token)


async def apply_pending(app: WorkerContext, shop: Shop, customer_id: int) -> Applied | None:
    """Apply every pending update of the customer; None when another worker holds the lock."""
    store = app.customers
    token = await store.try_lock(shop.domain, customer_id)
    if token is None:
        return None
    held = _Held(app, shop, customer_id, token)
    try:
        while True:
            entries = await store.pending(shop.domain, customer_id)
            applied = await _apply(app, shop, customer_id, entries, held)
            if applied.hold_s > 0:
                # Within the patch interval: collect what else arrives meanwhile into the same write.
                await asyncio.sleep(applied.hold_s)
                continue
            if applied.fetch_failed is not None:
                # Saved with what was known; the job retries the read (see FETCH_OWED).
                raise TransientError(
                    f"customer {customer_id}: the read from Shopify of fields never known failed "
                    f"({applied.fetch_failed}); the rest was applied and the read is retried"
                )
            return applied
    except LockLostError as exc:
        raise TransientError(str(exc)) from None
    finally:
        await held.release()


async def _apply(
    app: WorkerContext, shop: Shop, customer_id: int, entries: dict[str, dict[str, Any]], held: _Held
) -> Applied:
    store = app.customers
    stored = await store.load(shop.domain, customer_id)
    state, deleted_at, marks = stored.state, stored.deleted_at, dict(stored.marks)
    if not entries and FETCH_OWED not in marks:
        return Applied()
    ordered = sorted(
        entries.items(), key=lambda kv: (kv[1].get("triggered_at") or kv[1].get("received_at", 0), kv[0])
    )
    result = Applied()
    merged = _MergedWrites()
    if stored.staged is not None and deleted_at is None:
        # An earlier apply sent (some of) these writes and never saved (it died, or Redis went
        # away, in between): APSIS may hold any of them. Send them again with ours, and judge
        # the pending updates against the state they lead to, not the saved one.
        state, marks = stored.staged.state, dict(stored.staged.marks)
        merged.add(stored.staged.writes)
    fetched, fetch_error = False, None
    for update_id, raw in ordered:
        update = Update.from_dict(raw)
        result.received_at[update_id] = update.received_at
        try:
            normalized = update.normalized()
        except PayloadError as exc:
            # Deposited payloads were validated by their job; a bad one here is dropped with a log
            # line rather than blocking every later update of the customer.
            log.error("pending_update_invalid", customer_id=customer_id, error=str(exc))
            result.outcomes[update_id] = "skipped"
            continue
        if deleted_at is not None:
            result.outcomes[update_id] = "deleted"  # Shopify never reuses a deleted customer's id
            continue
        last = marks.get(update.family)
        if update.triggered_at is not None and last is not None and update.triggered_at < last:
            result.outcomes[update_id] = "stale"  # an older event of this family, delivered late
            continue
        plan = await _plan(app, shop, state, normalized, update.force, merged)
        if plan.unknown - _consent_only(plan.unknown) and not fetched and update.source == "webhook":
            # A field that decides membership or an attribute was never known (a tags delta on
            # unknown tags, a trimmed 2025-01 payload on a first sight): read the whole customer.
            fetched = True
            # The whole customer first (it fills what was never known), then the update itself
            # on top, so what only the update carries (say, a consent topic's state that this
            # API version's customer resource lacks) is not lost.
            before = state
            state, fetch_error = await _fill_from_shopify(app, shop, customer_id, state, update.force, merged)
            if state is not before:
                plan = await _plan(app, shop, state, normalized, update.force, merged)
        if plan.stale:
            result.outcomes[update_id] = "stale"
            continue
        state = plan.state
        if update.triggered_at is not None:
            marks[update.family] = max(update.triggered_at, marks.get(update.family, 0.0))
        merged.add(plan.writes)
        in_sections = bool(state and state.sections)
        result.outcomes[update_id] = "written" if plan.writes else ("unchanged" if in_sections else "skipped")
    if FETCH_OWED in marks and not fetched and _owed_paths(shop, state):
        # An earlier apply could not read the customer and no update since filled the fields
        # (a stale snapshot, nothing pending): read it now. It is newer than every update
        # folded above, so its writes come last.
        fetched = True
        state, fetch_error = await _fill_from_shopify(app, shop, customer_id, state, False, merged)
    if fetch_error is not None and _owed_paths(shop, state):
        marks.setdefault(FETCH_OWED, time.time())
        if time.time() - marks[FETCH_OWED] < FETCH_RETRY_S:
            result.fetch_failed = fetch_error
    elif FETCH_OWED in marks:
        # Read at last, or a later snapshot filled every field: owed no more.
        log.info("customer_fetch_owed_cleared", customer_id=customer_id, read=fetched)
        del marks[FETCH_OWED]
    writes = merged.writes()
    if any(isinstance(w, AttributePatch) for w in writes):
        hold = marks.get(_PATCHED, 0.0) + PATCH_INTERVAL_S - time.time()
        if hold > 0:
            result.hold_s = hold  # the caller waits, still holding the lock, then plans again
            return result
        marks[_PATCHED] = time.time()
    held.check()  # never send on a lock another worker may hold by now
    if writes and state is not None:
        await store.stage(shop.domain, customer_id, held.token, writes, state, marks)
    result.writes = await _send(app, shop, customer_id, writes)
    if result.writes == 0:
        for update_id, outcome in result.outcomes.items():
            if outcome == "written":
                result.outcomes[update_id] = "unchanged"  # folded writes cancelled each other out
    await store.settle(shop.domain, customer_id, held.token, list(entries), state, marks)
    return result


def _consent_only(paths: frozenset[str]) -> frozenset[str]:
    return frozenset(p for p in paths if p.startswith(_CONSENT_PATHS))


def _owed_paths(shop: Shop, state: SyncState | None) -> frozenset[str]:
    """Paths never known that a read of the customer would fill (consent is not worth one)."""
    unknown = unknown_paths(shop, state)
    return unknown - _consent_only(unknown)


async def _fill_from_shopify(
    app: WorkerContext,
    shop: Shop,
    customer_id: int,
    state: SyncState | None,
    force: bool,
    merged: _MergedWrites,
) -> tuple[SyncState | None, str | None]:
    """Read the whole customer and plan it over `state` (it fills what was never known): the
    state after it (`state` itself when nothing changed) and the error when the read failed."""
    try:
        full = await _fetch(app, shop, customer_id)
    except _FetchError as exc:
        return state, str(exc)
    if full is None:
        return state, None  # deleted in Shopify: its delete webhook follows
    base = await _plan(app, shop, state, full, force, merged)
    if base.stale:
        return state, None
    merged.add(base.writes)
    return base.state, None


async def _plan(
    app: WorkerContext,
    shop: Shop,
    state: SyncState | None,
    update: CustomerSnapshot | TagsChange,
    force: bool,
    unsent: _MergedWrites,
) -> Plan:
    """Plan `update` over `state`; `unsent`: the writes this apply planned so far (not sent yet)."""
    needed = needs_old_address_topics(shop, state, update)
    old_topics: dict[AddressList, list[str]] = {}
    if needed:
        apsis = app.apsis(shop)
        for entry in needed:
            # Consent given outside Shopify (forms, other integrations) moves with the address
            # too, so APSIS is asked. But APSIS has not seen what this apply planned before this
            # update (an opt-out of the old address folded just before the change, staged writes
            # of a cut-off apply): those win for their topics. Writes already sent do not: APSIS
            # knows them, and anything newer there (a form opt-in after our opt-out) is right.
            remote = await apsis.opted_in_topics(
                entry.channel, entry.address, entry.section, entry.consent_list
            )
            planned = unsent.consents_for(entry)
            kept = {t for t in remote if planned.get(t, OPT_IN) == OPT_IN}
            old_topics[entry] = sorted(kept | {t for t, kind in planned.items() if kind == OPT_IN})
    return plan_sync(shop, state, update, old_address_topics=old_topics, force=force)


class _FetchError(Exception):
    """The read of the whole customer failed."""


async def _fetch(app: WorkerContext, shop: Shop, customer_id: int) -> CustomerSnapshot | None:
    """The customer as Shopify has it now; None when Shopify has no such customer."""
    try:
        payload = await app.shopify(shop).get_customer(customer_id)
    except (ApiError, WaitTooLongError) as exc:
        log.warning("customer_fetch_failed", customer_id=customer_id, error=str(exc))
        raise _FetchError(str(exc)) from None
    return normalize_customer(payload) if payload is not None else None


class _MergedWrites:
    """Writes of several plans folded into the fewest requests with the same end result."""

    def __init__(self) -> None:
        self._order: list[tuple[Any, ...]] = []
        self._patches: dict[tuple[str, str], dict[str, Any]] = {}
        self._others: dict[tuple[Any, ...], Write] = {}

    def add(self, writes: Sequence[Write]) -> None:
        for write in writes:
            if isinstance(write, AttributePatch):
                key: tuple[Any, ...] = ("patch", write.section, write.profile_key)
                self._patches.setdefault((write.section, write.profile_key), {}).update(write.body)
            elif isinstance(write, ConsentWrite):
                key = (
                    "consent",
                    write.channel,
                    write.address,
                    write.section,
                    write.consent_list,
                    write.topic,
                )
                self._others[key] = write
            else:
                key = ("delete", write.keyspace, write.profile_key)
                self._others[key] = write
            if key in self._order:
                self._order.remove(key)  # the last write for a key is the one that counts
            self._order.append(key)

    def consents_for(self, entry: AddressList) -> dict[str, ConsentType]:
        """Topic -> the last consent planned for one consent list of one address."""
        return {
            key[5]: write.type
            for key, write in self._others.items()
            if isinstance(write, ConsentWrite) and key[1:5] == tuple(entry)
        }

    def writes(self) -> list[Write]:
        out: list[Write] = []
        for key in self._order:
            if key[0] == "patch":
                out.append(AttributePatch(key[1], self._patches[(key[1], key[2])], key[2]))
            else:
                out.append(self._others[key])
        return out


async def _send(app: WorkerContext, shop: Shop, customer_id: int, writes: Sequence[Write]) -> int:
    if not writes:
        return 0
    apsis = app.apsis(shop)
    keyspace = shop.apsis.keyspace
    for write in writes:
        if isinstance(write, AttributePatch):
            await apsis.patch_attributes(
                keyspace, write.profile_key or str(customer_id), write.section, write.body
            )
            app.metrics.inc("shopsync_apsis_writes_total", {"kind": "attributes"})
        elif isinstance(write, ConsentWrite):
            await apsis.write_consent(
                write.channel, write.address, write.section, write.consent_list, write.topic, write.type
            )
            app.metrics.inc("shopsync_apsis_writes_total", {"kind": "consent"})
            log.info(
                "consent_written",
                customer_id=customer_id,
                address=mask_email(write.address) if "@" in write.address else mask_phone(write.address),
                consent_topic=write.topic,
                consent=write.type,
            )
        elif isinstance(write, ProfileDelete):
            await apsis.delete_profile(write.keyspace, write.profile_key)
    return len(writes)


async def delete_customer(app: WorkerContext, shop: Shop, customer_id: int, deleted_at: float) -> bool:
    """Delete the profile in APSIS and leave a tombstone so late updates cannot recreate it."""
    store = app.customers
    deadline = time.monotonic() + DRIVE_BUDGET_S
    while (token := await store.try_lock(shop.domain, customer_id)) is None:
        if time.monotonic() > deadline:
            raise TransientError(f"customer {customer_id} busy")
        await asyncio.sleep(0.05)
    held = _Held(app, shop, customer_id, token)
    try:
        existed = await app.apsis(shop).delete_profile(shop.apsis.keyspace, str(customer_id))
        pending = await store.pending(shop.domain, customer_id)
        await store.bury(shop.domain, customer_id, deleted_at, token, list(pending))
        return existed
    except LockLostError as exc:
        raise TransientError(str(exc)) from None
    finally:
        await held.release()
