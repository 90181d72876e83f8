"""The full sync's batch jobs: `full_sync_batch` applies one batch's customers.

Customers go through `worker.sync.submit` (the real-time path's lock, state and ordering: a newer
real-time update is never overwritten), `BATCH_CONCURRENCY` at a time, each outcome recorded as
it lands together with the record's counters; a redone batch skips the customers already
recorded. A customer that fails for good is counted `failed` and logged; transient failures are
retried in the batch for a while, then the batch is retried (and skips what was done). With
`--with-orders`, each customer's past orders follow through `orders_hook`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from core import fullsync_control as control
from core.fullsync_control import RUNNING, SyncKeys
from core.redis_conn import typed
from mappings.installation import Shop
from worker import lanes
from worker.context import WorkerContext
from worker.fair_dispatch import park_batch
from worker.fullsync.lease import Lease
from worker.fullsync.records import load, maybe_finish
from worker.runtime import MAX_TRIES, TransientError, is_transient, run_job
from worker.sync import Outcome, submit
from worker.sync_update import Update

log = structlog.get_logger("worker.fullsync")

BATCH_CONCURRENCY = 16
# Time budgets (run_job's timeout: past it, a Retry). A batch applies 250 customers, 16 at a time,
# each within the sync's own budgets; a minute or two when the APSIS limit is shared with other
# batches, plus its in-batch retries. Past the budget the batch is retried and skips what it did.
BATCH_TIMEOUT_S = 300.0
IN_BATCH_RETRY_S = 90.0  # longer than a dead worker's customer locks live (customer_store.LOCK_TTL_MS)

_COUNTER = {
    "written": "synced",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "stale": "stale",
    "deleted": "deleted",
    "elsewhere": "synced",  # applied together with another update of the customer
    "failed": "failed",
}
# An outcome counts once, even if two jobs ended up on one batch (a stalled one lost its lease).
# KEYS: outcomes, record. ARGV: customer id, outcome, counter, ttl.
_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[2], 'seen', 1)
return 1
"""

OrdersHook = Callable[..., Awaitable[Any]]


async def full_sync_batch(ctx: dict[str, Any], sync_id: str, batch: int) -> Any:
    job_try: int = ctx.get("job_try", 1)

    async def body(app: WorkerContext, sync_id: str, batch: int) -> dict[str, Any]:
        return await _batch(app, sync_id, batch, last_try=job_try >= MAX_TRIES)

    return await run_job(
        ctx,
        control.BATCH_FUNCTION,
        body,
        (sync_id, batch),
        queue=ctx["app"].keys.fullsync_queue,
        timeout_s=BATCH_TIMEOUT_S,
        bind={"sync_id": sync_id, "batch": batch},
    )


def orders_hook() -> OrdersHook | None:
    """`worker.orders.sync_customer_orders(app, shop, customer_id)` once issue 7 provides it."""
    try:
        module = importlib.import_module("worker.orders")
    except ImportError:
        return None
    hook = getattr(module, "sync_customer_orders", None)
    return hook if callable(hook) else None


async def _batch(app: WorkerContext, sync_id: str, batch: int, *, last_try: bool) -> dict[str, Any]:
    sk = SyncKeys(app.keys, sync_id)
    record = await load(app, sync_id)
    if record is None or record.get("state") != RUNNING:
        return {"skipped": "not running"}
    if await typed(app.redis.sismember(sk.done, str(batch))):
        return {"skipped": "done"}
    shop = app.installations.get(str(record["shop"]))
    parked = "not in the installations file" if shop is None else _backing_off(shop.domain)
    if parked is not None:
        # Kept for later, not failed: parked at the front of the shop's ready list.
        job_id = await park_batch(app.redis, app.keys, sync_id, batch, str(record["shop"]))
        log.warning("full_sync_batch_parked", sync_id=sync_id, batch=batch, job_id=job_id, reason=parked)
        return {"parked": parked}
    assert shop is not None
    lanes.enter(shop.domain)
    lease = Lease(app, sk.lease(batch))
    if not await lease.acquire():
        return {"skipped": "batch lease held"}
    try:
        raw = await app.redis.get(sk.page(batch))
        customers: list[dict[str, Any]] = orjson.loads(raw) if raw else []
        if raw is None:
            log.error("full_sync_batch_missing", sync_id=sync_id, batch=batch)
        recorded = {
            k.decode(): v.decode() for k, v in (await typed(app.redis.hgetall(sk.outcomes(batch)))).items()
        }
        runner = _BatchRunner(app, shop, sync_id, batch, record, recorded)
        transient = await runner.run(customers)
        if transient and (reason := _backing_off(shop.domain)) is not None:
            job_id = await park_batch(app.redis, app.keys, sync_id, batch, shop.domain)
            log.warning("full_sync_batch_parked", sync_id=sync_id, batch=batch, job_id=job_id, reason=reason)
            return {"parked": reason, "left": len(transient)}  # the next run skips what was done
        if transient and not last_try:
            raise TransientError(f"{len(transient)} customer(s) failed transiently: {transient[0][1]}")
        for cid, error in transient:  # out of tries: count them failed, finish the batch
            await runner.record(cid, "failed", error)
        async with app.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(sk.done, str(batch))
            pipe.expire(sk.done, control.DATA_TTL_S)
            pipe.hdel(sk.pending, str(batch))
            pipe.delete(sk.page(batch), sk.outcomes(batch))
            pipe.hincrby(sk.record, "batches_done", 1)
            await pipe.execute()
        await maybe_finish(app, sync_id)
        return {"customers": len(customers), "redone": len(recorded)}
    finally:
        await lease.release()


class _BatchRunner:
    def __init__(
        self,
        app: WorkerContext,
        shop: Shop,
        sync_id: str,
        batch: int,
        record: dict[str, Any],
        recorded: dict[str, str],
    ) -> None:
        self.app, self.shop, self.sync_id, self.batch = app, shop, sync_id, batch
        self.keys = SyncKeys(app.keys, sync_id)
        self.force = bool(record.get("force"))
        self.kind = "bulk" if record.get("source") == "bulk" else "rest"
        self.source = "reconcile" if record.get("kind") == "reconcile" else "fullsync"
        self.recorded = recorded
        self.hook = orders_hook() if record.get("with_orders") else None

    async def run(self, customers: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Apply every customer not yet recorded; the transient failures left after retrying them
        here for a while (a customer locked by a worker that died stays busy until its lock
        expires: waiting for it in the batch is cheaper than the job's retry backoff)."""
        deadline = time.monotonic() + IN_BATCH_RETRY_S
        todo = customers
        while True:
            transient = await self._pass(todo)
            if not transient or time.monotonic() > deadline or _backing_off(self.shop.domain):
                return transient
            await asyncio.sleep(1.0)
            failed = {cid for cid, _ in transient}
            todo = [c for c in customers if str(c.get("id", "?")) in failed]

    async def _pass(self, customers: list[dict[str, Any]]) -> list[tuple[str, str]]:
        semaphore = asyncio.Semaphore(BATCH_CONCURRENCY)
        transient: list[tuple[str, str]] = []

        async def one(customer: dict[str, Any]) -> None:
            async with semaphore:
                error = await self._apply(customer)
                if error is not None:
                    transient.append(error)

        await asyncio.gather(*(one(c) for c in customers))
        return transient

    async def _apply(self, customer: dict[str, Any]) -> tuple[str, str] | None:
        cid = str(customer.get("id", "?"))
        update = Update(
            kind=self.kind,  # type: ignore[arg-type]
            payload=customer,
            received_at=time.time(),
            source=self.source,  # type: ignore[arg-type]
            force=self.force,
        )
        try:
            if cid not in self.recorded:
                if await self.app.realtime_lag.make_way():  # webhooks start late: they go first
                    self.app.metrics.inc("shopsync_fullsync_yields_total")
                outcome: Outcome = await submit(self.app, self.shop, f"fs:{self.sync_id}:{cid}", update)
                await self.record(cid, outcome)
            if self.hook is not None and f"orders:{cid}" not in self.recorded:
                await self.hook(self.app, self.shop, _numeric_id(cid))
                await typed(self.app.redis.hset(self.keys.outcomes(self.batch), f"orders:{cid}", "1"))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if is_transient(exc):
                return (cid, error)
            if cid not in self.recorded:
                await self.record(cid, "failed", error)
            else:
                log.error("full_sync_orders_failed", sync_id=self.sync_id, customer_id=cid, error=error)
        return None

    async def record(self, cid: str, outcome: str, error: str | None = None) -> None:
        """The outcome and the record's counters together: a redone batch counts nobody twice."""
        await self.app.script(_RECORD)(
            keys=[self.keys.outcomes(self.batch), self.keys.record],
            args=[cid, outcome, _COUNTER.get(outcome, "synced"), control.DATA_TTL_S],
        )
        self.recorded[cid] = outcome
        self.app.metrics.inc("shopsync_customers_total", {"source": self.source, "outcome": outcome})
        if outcome == "failed":
            log.error("full_sync_customer_failed", sync_id=self.sync_id, customer_id=cid, error=error)


def _backing_off(shop: str) -> str | None:
    """The reason, while the shop backs off (worker/shop_backoff.py)."""
    parked = lanes.parked(shop, time.time())
    return None if parked is None else f"backoff: {parked[1]}"


def _numeric_id(cid: str) -> int | str:
    tail = cid.rsplit("/", 1)[-1]  # bulk lines carry gids
    return int(tail) if tail.isdigit() else cid
