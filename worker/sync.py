"""Applying customer updates to APSIS: the imperative shell around `mappings.plan`.

`submit` is what every job calls: it deposits one update for a customer (see
`worker.customer_store`) and drives the customer's pending updates until its own is applied.
`apply_pending` is the one place that talks to APSIS for customer data: under the customer's
lock it folds every pending update, oldest first, through the pure planner, merges their writes
(so a burst becomes one patch per section), sends them, then saves the new state and drops the
applied updates in one transaction. Any failure leaves everything pending for the retry.
`delete_customer` deletes the profile and leaves a tombstone.

One failure is handled apart: the read of the whole customer that an update with fields never
known calls for (see `FETCH_OWED`). The pieces: the deposited record (`worker.sync_update`), the
renewed lock (`worker.sync_lock`), planning with the email-change carry-over
(`worker.sync_plan`), the read of the whole customer (`worker.sync_fetch`) and folding and
sending the writes (`worker.sync_writes`).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from mappings.installation import Shop
from mappings.plan import address_changes
from mappings.snapshot import PayloadError
from mappings.writes import AttributePatch
from worker.context import WorkerContext
from worker.customer_store import Locked, LockLostError, Stored
from worker.runtime import TransientError
from worker.sync_consents import guard_consents
from worker.sync_fetch import consent_only, fill_from_shopify, owed_paths
from worker.sync_lock import HeldLock
from worker.sync_plan import plan_update
from worker.sync_update import Update, customer_of
from worker.sync_writes import MergedWrites, send_writes

log = structlog.get_logger("worker.sync")

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
    locked: Locked | None = None,
) -> Outcome:
    """Deposit `update` (unless the caller already did: worker/coalesce.py) and see it applied
    (by this worker or another). Transient on timeout. `locked`: the caller's deposit took the
    customer's lock and read what the apply starts from."""
    customer_id = customer_of(update.normalized())  # a poison payload fails here, before Redis
    store = app.customers
    if not deposited:
        # Deposit and take the lock in one round trip (None: busy; apply_pending tries again).
        assert locked is None, "a lock comes only with the caller's own deposit"
        locked = await store.deposit_and_lock(shop.domain, customer_id, update_id, update.to_dict())
    deadline = time.monotonic() + budget_s
    delay = 0.01
    while True:
        applied = await apply_pending(app, shop, customer_id, locked)
        locked = None
        if applied is not None and update_id in applied.outcomes:
            return applied.outcomes[update_id]
        if not await store.is_pending(shop.domain, customer_id, update_id):
            return "elsewhere"  # another worker applied it together with its own
        if time.monotonic() > deadline:
            raise TransientError(f"customer {customer_id} busy for {budget_s:.0f} s")
        await asyncio.sleep(delay + random.uniform(0, delay))
        delay = min(delay * 2, 0.2)


async def apply_pending(
    app: WorkerContext, shop: Shop, customer_id: int, locked: Locked | None = None
) -> Applied | None:
    """Apply every pending update of the customer; None when another worker holds the lock.
    `locked`: the lock, taken and read already."""
    store = app.customers
    if locked is None:
        locked = await store.lock_and_read(shop.domain, customer_id)
    if locked is None:
        return None
    held = HeldLock(app, shop, customer_id, locked.token)
    first: Locked | None = locked
    try:
        while True:
            if first is not None:  # read with the lock: the first round needs no other read
                entries, stored, first = first.entries, first.stored, None
            else:
                entries = await store.pending(shop.domain, customer_id)
                stored = await store.load(shop.domain, customer_id)
            applied = await _apply(app, shop, customer_id, entries, stored, held)
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
    app: WorkerContext,
    shop: Shop,
    customer_id: int,
    entries: dict[str, dict[str, Any]],
    stored: Stored,
    held: HeldLock,
) -> Applied:
    store = app.customers
    state, deleted_at, marks = stored.state, stored.deleted_at, dict(stored.marks)
    if not entries and FETCH_OWED not in marks:
        return Applied()
    ordered = sorted(
        entries.items(), key=lambda kv: (kv[1].get("triggered_at") or kv[1].get("received_at", 0), kv[0])
    )
    result = Applied()
    merged = MergedWrites()
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
        plan = await plan_update(app, shop, state, normalized, update.force)
        # A read of the whole customer, at most once an apply, when the update cannot be
        # trusted alone:
        # - from a webhook, a field that decides membership or an attribute was never known (a
        #   tags delta on unknown tags, a trimmed 2025-01 payload on a first sight);
        # - from a read (full sync, reconciliation), the snapshot has the state's `updated_at`
        #   (whole seconds) and other values (`Plan.tied`): read before the edit a webhook
        #   already applied, or after one still to come. A webhook keeps its place (Shopify's
        #   order of events, `marks`).
        # The whole customer first, then the update planned on top, so what only the update
        # carries (say, a consent topic's state this API version's customer resource lacks) is
        # not lost.
        unread = plan.unknown - consent_only(plan.unknown) and update.source == "webhook"
        tied = plan.tied and update.source != "webhook"
        if (unread or tied) and not fetched:
            fetched = True
            if tied:
                app.metrics.inc("shopsync_customer_tie_reads_total")
            before = state
            state, fetch_error = await fill_from_shopify(app, shop, customer_id, state, update.force, merged)
            if state is not before:
                plan = await plan_update(app, shop, state, normalized, update.force)
        if plan.tied and update.source != "webhook":
            # Still tied after the read (or without it): the state stands; a newer edit than it
            # still has its webhook to come.
            result.outcomes[update_id] = "stale"
            continue
        if plan.stale:
            result.outcomes[update_id] = "stale"
            continue
        state = plan.state
        if update.triggered_at is not None:
            marks[update.family] = max(update.triggered_at, marks.get(update.family, 0.0))
        merged.add(plan.writes)
        in_sections = bool(state and state.sections)
        result.outcomes[update_id] = "written" if plan.writes else ("unchanged" if in_sections else "skipped")
    if FETCH_OWED in marks and not fetched and owed_paths(shop, state):
        # An earlier apply could not read the customer and no update since filled the fields
        # (a stale snapshot, nothing pending): read it now. It is newer than every update
        # folded above, so its writes come last.
        fetched = True
        state, fetch_error = await fill_from_shopify(app, shop, customer_id, state, False, merged)
    if fetch_error is not None and owed_paths(shop, state):
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
    # Opt-ins and address changes ask APSIS first: an opt-out given there since stays (Consent 2.0).
    changed = bool(address_changes(stored.state, state))
    writes, state = await guard_consents(app, shop, customer_id, writes, state, changed, marks)
    held.check()  # never send on a lock another worker may hold by now
    if writes and state is not None:
        await store.stage(shop.domain, customer_id, held.token, writes, state, marks)
    result.writes = await send_writes(app, shop, customer_id, writes)
    if result.writes == 0:
        for update_id, outcome in result.outcomes.items():
            if outcome == "written":
                result.outcomes[update_id] = "unchanged"  # folded writes cancelled each other out
    # Saved, the apply is over whatever comes next (`apply_pending` returns or raises): the lock
    # goes in the same step.
    await store.settle(shop.domain, customer_id, held.token, list(entries), state, marks, release=True)
    held.released = True
    return result


async def delete_customer(app: WorkerContext, shop: Shop, customer_id: int, deleted_at: float) -> bool:
    """Delete the profile in APSIS and leave a tombstone so late updates cannot recreate it."""
    store = app.customers
    token = await store.lock_within(shop.domain, customer_id, DRIVE_BUDGET_S)
    if token is None:
        raise TransientError(f"customer {customer_id} busy")
    held = HeldLock(app, shop, customer_id, token)
    try:
        existed = await app.apsis(shop).delete_profile(shop.apsis.keyspace, str(customer_id))
        pending = await store.pending(shop.domain, customer_id)
        await store.bury(shop.domain, customer_id, deleted_at, token, list(pending))
        return existed
    except LockLostError as exc:
        raise TransientError(str(exc)) from None
    finally:
        await held.release()
