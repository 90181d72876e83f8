"""Full sync in the worker: a coordinator walks the store, batch jobs apply the customers.

- `full_sync_walk` (the coordinator, one at a time per sync, holding the sync's walk lease) reads
  customers a page (250) at a time, REST or from a bulk export, and turns each page into a batch:
  the page's customers, the batch's job and the walk's checkpoint (next cursor, lines read) go
  to Redis in one transaction, so a crash either loses the page (read again) or keeps it and its
  cursor together, never a batch twice. It never runs more than `MAX_AHEAD` batches ahead of
  the batch workers (Redis holds at most that many pages), and it hands over to a fresh job of
  itself every `WALK_SLICE_S` so no job runs for hours.
- `full_sync_batch` applies its customers through `worker.sync.submit` (the real-time path's lock,
  state and ordering: a newer real-time update is never overwritten), `BATCH_CONCURRENCY` at a
  time, recording each outcome as it lands; a redone batch skips the customers already recorded.
  A customer that fails for good is counted `failed` and logged; transient failures retry the
  batch (which skips what was done).
- `full_sync_watchdog` (cron, every few seconds, on the real-time worker) re-enqueues a walk or a
  batch whose job died (SIGKILL, lost worker): arq would re-run it only after its in-progress key
  expires (job timeout + 10 s), leases tell sooner. Superseded jobs find they have nothing to do.
- `full_sync_reconcile` (cron, every minute) starts a reconciliation per shop when its interval
  has passed: the same walk, filtered by `updated_at_min` = start of the last completed walk.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from arq.cron import CronJob, cron
from arq.worker import func
from redis.exceptions import WatchError

from core import fullsync_control as control
from core.fullsync_control import RUNNING, SyncKeys
from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.redis_conn import command, typed
from mappings.installation import Installations, Shop
from worker.context import WorkerContext
from worker.fullsync_source import bulk_lines, customer_fields, customer_page
from worker.runtime import MAX_TRIES, TransientError, is_transient, run_job
from worker.sync import Outcome, Update, submit

log = structlog.get_logger("worker.fullsync")

PAGE_SIZE = 250
# Batches enqueued and not done; the coordinator waits above it (Redis holds at most this many
# pages). Enough to keep every batch slot of a few worker processes busy.
MAX_AHEAD = int(os.environ.get("SHOPSYNC_FULLSYNC_MAX_AHEAD", "12"))
BATCH_CONCURRENCY = 16
WALK_SLICE_S = 120.0
# Time budgets (run_job's timeout: past it, a Retry). A batch applies 250 customers, 16 at a time,
# each within the sync's own budgets; a minute or two when the APSIS limit is shared with other
# batches, plus its in-batch retries. Past the budget the batch is retried and skips what it did.
BATCH_TIMEOUT_S = 300.0
WALK_TIMEOUT_S = WALK_SLICE_S + 120  # the slice, then finishing the page or export poll under way
IN_BATCH_RETRY_S = 90.0  # longer than a dead worker's customer locks live (customer_store.LOCK_TTL_MS)
# arq's limit for our functions: above every budget (arq's own timeout fails a job without a
# Retry). A killed worker's jobs do not wait for it: their leases lapse and the watchdog hands
# the work to new jobs; the limit (+ 10 s) only keeps the superseded job's in-progress mark.
JOB_TIMEOUT_S = int(BATCH_TIMEOUT_S) + 30
# The watchdog and reconciliation crons run on the real-time worker, whose killed jobs come back
# after its longest function timeout + 10 s: they must stay under its job timeout (worker/main.py).
CRON_TIMEOUT_S = 20
LEASE_TTL_MS = 10_000
LEASE_RENEW_S = 3.0
WATCHDOG_SECONDS = frozenset(range(0, 60, 5))
RECONCILE_MARGIN_S = 120  # updated_at has second resolution and clocks differ: walk a bit earlier
BULK_POLL_S = 2.0
HISTORY = 500  # finished sync records kept for status

_COUNTER = {
    "written": "synced",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "stale": "stale",
    "deleted": "deleted",
    "elsewhere": "synced",  # applied together with another update of the customer
    "failed": "failed",
}

# KEYS: record, pending, active key, active set. ARGV: finished_at, sync id.
_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= '"running"' then return 0 end
if redis.call('HGET', KEYS[1], 'walk_done') ~= 'true' then return 0 end
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', '"finished"', 'finished_at', ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
redis.call('SREM', KEYS[4], ARGV[2])
return 1
"""
# An outcome counts once, even if two jobs ended up on one batch (a stalled one lost its lease).
# KEYS: outcomes, record. ARGV: customer id, outcome, counter, ttl.
_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[2], 'seen', 1)
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

OrdersHook = Callable[..., Awaitable[Any]]


# --- leases --------------------------------------------------------------------------------


class Lease:
    """A short, renewed claim on a walk or batch: held while a live job works on it."""

    def __init__(self, app: WorkerContext, key: str) -> None:
        self.app, self.key = app, key
        self.token = f"{app.worker_id}:{os.urandom(4).hex()}"
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        if not await self.app.redis.set(self.key, self.token, nx=True, px=LEASE_TTL_MS):
            return False
        self._task = asyncio.create_task(self._renew())
        return True

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            with contextlib.suppress(Exception):
                await command(self.app.redis)("EVAL", _RENEW, 1, self.key, self.token, LEASE_TTL_MS)

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await command(self.app.redis)("EVAL", _RELEASE, 1, self.key, self.token)


# --- records -------------------------------------------------------------------------------


async def load(app: WorkerContext, sync_id: str) -> dict[str, Any] | None:
    return await control.read_sync(app.redis, app.keys, sync_id)


def _enqueue(pipe: Any, app: WorkerContext, job_id: str, function: str, args: tuple[Any, ...]) -> None:
    """arq's enqueue (job key + queue entry), inside the caller's transaction."""
    pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, job_bytes(function, args))
    pipe.zadd(app.keys.fullsync_queue, {job_id: now_ms()})


async def fail_sync(app: WorkerContext, sync_id: str, shop: str, error: str) -> None:
    sk = SyncKeys(app.keys, sync_id)
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            sk.record,
            mapping={
                "state": orjson.dumps(control.FAILED),
                "error": orjson.dumps(error),
                "finished_at": orjson.dumps(time.time()),
            },
        )
        pipe.srem(control.active_set(app.keys), sync_id)
        await pipe.execute()
    current = await app.redis.get(app.keys.full_sync(shop))
    if current is not None and current.decode() == sync_id:
        await app.redis.delete(app.keys.full_sync(shop))
    log.error("full_sync_failed", sync_id=sync_id, shop=shop, error=error)


async def maybe_finish(app: WorkerContext, sync_id: str) -> bool:
    """Finish the sync if the walk is over and every batch is done (exactly one caller wins)."""
    sk = SyncKeys(app.keys, sync_id)
    record = await load(app, sync_id)
    if record is None:
        return False
    shop = str(record["shop"])
    finished_at = time.time()
    won = await command(app.redis)(
        "EVAL",
        _FINISH,
        4,
        sk.record,
        sk.pending,
        app.keys.full_sync(shop),
        control.active_set(app.keys),
        orjson.dumps(finished_at),
        sync_id,
    )
    if not int(won):
        return False
    record = await load(app, sync_id) or record
    duration = finished_at - float(record["started_at"])
    rate = int(record.get("seen") or 0) / max(duration, 1e-6)
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            sk.record,
            mapping={
                "duration_s": orjson.dumps(round(duration, 3)),
                "rate_per_s": orjson.dumps(round(rate, 2)),
            },
        )
        # Reconciliation walks from the start of the last complete walk.
        pipe.set(
            control.walked_key(app.keys, shop),
            orjson.dumps({"started_at": record["started_at"], "sync_id": sync_id}),
        )
        pipe.delete(sk.done)
        await pipe.execute()
    await _trim_history(app)
    counts = {name: int(record.get(name) or 0) for name in control.COUNTERS}
    app.metrics.inc("shopsync_full_syncs_total", {"kind": str(record.get("kind")), "state": "finished"})
    log.info(
        "full_sync_finished",
        sync_id=sync_id,
        shop=shop,
        kind=record.get("kind"),
        source=record.get("source"),
        duration_s=round(duration, 3),
        customers_per_s=round(rate, 2),
        batches=record.get("batches"),
        **counts,
    )
    return True


async def _trim_history(app: WorkerContext) -> None:
    """Keep the records of the newest `HISTORY` syncs (reconciliation adds one an hour)."""
    old = await app.redis.zrange(app.keys.full_syncs, 0, -(HISTORY + 1))
    for raw in old:
        sync_id = raw.decode()
        if await typed(app.redis.sismember(control.active_set(app.keys), sync_id)):
            continue
        async with app.redis.pipeline(transaction=True) as pipe:
            pipe.delete(app.keys.full_sync_record(sync_id))
            pipe.zrem(app.keys.full_syncs, sync_id)
            await pipe.execute()


# --- the coordinator -----------------------------------------------------------------------


async def full_sync_walk(ctx: dict[str, Any], sync_id: str, gen: int) -> Any:
    return await run_job(
        ctx,
        control.WALK_FUNCTION,
        _walk,
        (sync_id, gen),
        queue=ctx["app"].keys.fullsync_queue,
        timeout_s=WALK_TIMEOUT_S,
        bind={"sync_id": sync_id, "walk_gen": gen},
    )


async def _walk(app: WorkerContext, sync_id: str, gen: int) -> dict[str, Any]:
    record = await load(app, sync_id)
    if record is None or record.get("state") != RUNNING:
        return {"skipped": "not running"}
    if int(record.get("walk_gen") or 0) != gen:
        return {"skipped": "superseded"}  # the watchdog gave the walk to a newer job
    if record.get("walk_done"):
        await maybe_finish(app, sync_id)
        return {"skipped": "walk done"}
    shop = app.installations.get(str(record["shop"]))
    if shop is None:
        await fail_sync(app, sync_id, str(record["shop"]), "shop not in the installations file")
        return {"failed": "unknown shop"}
    if await typed(app.redis.sismember(app.keys.uninstalled, shop.domain)):
        await fail_sync(app, sync_id, shop.domain, "the shop uninstalled the app")
        return {"failed": "shop uninstalled"}
    lease = Lease(app, SyncKeys(app.keys, sync_id).lease("walk"))
    if not await lease.acquire():
        return {"skipped": "walk lease held"}
    walker = _Walker(app, shop, sync_id, record, lease)
    try:
        deadline = time.monotonic() + WALK_SLICE_S
        if record.get("source") == "bulk":
            done = await walker.bulk(deadline)
        else:
            done = await walker.rest(deadline)
    except Exception as exc:
        if is_transient(exc):
            raise  # retried with backoff (and revived by the watchdog after the last try)
        # Retrying cannot help (credentials revoked, a scope missing): say so on the record
        # instead of leaving a sync that never ends.
        await fail_sync(app, sync_id, shop.domain, f"{type(exc).__name__}: {exc}")
        return {"failed": str(exc)}
    finally:
        await lease.release()  # before handing over: the next slice takes the lease at once
    if done:
        await maybe_finish(app, sync_id)
    else:
        await _hand_over(app, sync_id, gen, defer_s=walker.defer_s)
    return {"pages": walker.pages, "walk_done": done}


async def _hand_over(app: WorkerContext, sync_id: str, gen: int, *, defer_s: float = 0.0) -> None:
    """Continue the walk in a new job (the next slice), unless the walk moved on meanwhile."""
    sk = SyncKeys(app.keys, sync_id)
    job_id = control.walk_job_id(sync_id, gen + 1)
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.hset(sk.record, mapping={"walk_gen": gen + 1})
        pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, job_bytes(control.WALK_FUNCTION, (sync_id, gen + 1)))
        pipe.zadd(app.keys.fullsync_queue, {job_id: now_ms() + int(defer_s * 1000)})
        await pipe.execute()


class _Walker:
    def __init__(
        self, app: WorkerContext, shop: Shop, sync_id: str, record: dict[str, Any], lease: Lease
    ) -> None:
        self.app, self.shop, self.sync_id, self.record, self.lease = app, shop, sync_id, record, lease
        self.keys = SyncKeys(app.keys, sync_id)
        self.batch = int(record.get("batches") or 0)
        self.pages = 0
        self.walked = 0  # customers batched by this slice
        self.defer_s = 0.0

    async def _set(self, **fields: bytes) -> None:
        await typed(self.app.redis.hset(self.keys.record, mapping=dict(fields)))

    async def _room(self, deadline: float) -> bool:
        """Backpressure: wait while MAX_AHEAD batches are waiting; False when the slice ends."""
        delay = 0.05
        while int(await typed(self.app.redis.hlen(self.keys.pending))) >= MAX_AHEAD:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        return True

    async def _emit(self, customers: list[dict[str, Any]], checkpoint: dict[str, Any], done: bool) -> None:
        """One batch, its job and the walk's checkpoint, in one transaction."""
        n = self.batch
        job_id = control.batch_job_id(self.sync_id, n)
        fields = {k: orjson.dumps(v) for k, v in checkpoint.items()}
        fields["batches"] = orjson.dumps(n + 1 if customers else n)
        if done:
            fields["walk_done"] = b"true"
        while True:
            try:
                await self._emit_once(n, job_id, customers, fields, done)
                break
            except WatchError:
                continue  # our own renewal touched the lease: check it again
        if customers:
            self.batch += 1
            self.walked += len(customers)
        self.pages += 1

    async def _emit_once(
        self, n: int, job_id: str, customers: list[dict[str, Any]], fields: dict[str, bytes], done: bool
    ) -> None:
        async with self.app.redis.pipeline(transaction=True) as pipe:
            # Only the walk's lease holder writes: should this job have stalled past its lease
            # and the watchdog given the walk to another, it must not emit the same batch.
            await pipe.watch(self.lease.key)
            if await pipe.get(self.lease.key) != self.lease.token.encode():
                raise TransientError("the walk's lease was lost; the walk continues in another job")
            pipe.multi()  # type: ignore[no-untyped-call]
            if customers:
                pipe.set(self.keys.page(n), orjson.dumps(customers), ex=control.DATA_TTL_S)
                pipe.hset(self.keys.pending, str(n), job_id)
                pipe.expire(self.keys.pending, control.DATA_TTL_S)
                _enqueue(pipe, self.app, job_id, control.BATCH_FUNCTION, (self.sync_id, n))
                pipe.hincrby(self.keys.record, "walked", len(customers))
            pipe.hset(self.keys.record, mapping=fields)
            if done and self.record.get("total") is None:
                walked = int(self.record.get("walked") or 0) + self.walked + len(customers)
                pipe.hset(self.keys.record, mapping={"total": orjson.dumps(walked)})
            await pipe.execute()

    async def rest(self, deadline: float) -> bool:
        client = self.app.shopify(self.shop)
        fields = customer_fields(self.shop)
        if self.batch == 0 and self.record.get("total") is None and not self.record.get("updated_at_min"):
            total = await client.count_customers()
            await self._set(total=orjson.dumps(total))
            self.record["total"] = total
        cursor: str | None = self.record.get("cursor")
        first = self.batch == 0 and cursor is None
        if not first and cursor is None:
            await self._emit([], {}, done=True)  # the last page was batched; the flag was lost
            return True
        while time.monotonic() < deadline:
            if not await self._room(deadline):
                return False
            page, next_cursor = await customer_page(
                client,
                cursor,
                updated_at_min=None if cursor else self.record.get("updated_at_min"),
                fields=fields,
                limit=PAGE_SIZE,
            )
            await self._emit(page, {"cursor": next_cursor}, done=next_cursor is None)
            if next_cursor is None:
                return True
            cursor = next_cursor
        return False

    async def bulk(self, deadline: float) -> bool:
        client = self.app.shopify(self.shop)
        operation = self.record.get("bulk_operation")
        if not operation:
            operation = await client.run_bulk_customer_export()
            await self._set(bulk_operation=orjson.dumps(operation))
        url = self.record.get("bulk_url")
        if not url:
            poll_s = 0.25  # small exports finish in a moment; big ones are polled calmly
            while True:
                state = await client.bulk_operation(str(operation))
                if state is None:
                    raise TransientError(f"bulk operation {operation} not found")
                status = str(state.get("status"))
                if status == "COMPLETED":
                    break
                if status in ("FAILED", "CANCELED", "EXPIRED"):
                    # Start a new export on the next slice.
                    await self._set(bulk_operation=orjson.dumps(None))
                    raise TransientError(f"bulk operation {status.lower()}: {state.get('errorCode')}")
                if time.monotonic() > deadline:
                    self.defer_s = BULK_POLL_S
                    return False
                await asyncio.sleep(poll_s)
                poll_s = min(BULK_POLL_S, poll_s * 2)
            url = state.get("url")
            total = int(state.get("rootObjectCount") or state.get("objectCount") or 0)
            await self._set(bulk_url=orjson.dumps(url), total=orjson.dumps(total))
            if not url:  # an empty store exports no file
                await self._emit([], {}, done=True)
                return True
        lines = int(self.record.get("lines") or 0)
        chunk: list[dict[str, Any]] = []
        async for raw in bulk_lines(client, str(url), lines):
            line = orjson.loads(raw)
            lines += 1
            if "__parentId" not in line:
                chunk.append(line)
            if len(chunk) >= PAGE_SIZE:
                if not await self._room(deadline):
                    return False  # the chunk is re-read from the checkpoint by the next slice
                await self._emit(chunk, {"lines": lines}, done=False)
                chunk = []
                if time.monotonic() > deadline:
                    return False
        if chunk and not await self._room(float("inf")):
            return False
        await self._emit(chunk, {"lines": lines}, done=True)
        return True


# --- batches -------------------------------------------------------------------------------


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
    if shop is None:
        await fail_sync(app, sync_id, str(record["shop"]), "shop not in the installations file")
        return {"failed": "unknown shop"}
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
            if not transient or time.monotonic() > deadline:
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
        await command(self.app.redis)(
            "EVAL",
            _RECORD,
            2,
            self.keys.outcomes(self.batch),
            self.keys.record,
            cid,
            outcome,
            _COUNTER.get(outcome, "synced"),
            control.DATA_TTL_S,
        )
        self.recorded[cid] = outcome
        self.app.metrics.inc("shopsync_customers_total", {"source": self.source, "outcome": outcome})
        if outcome == "failed":
            log.error("full_sync_customer_failed", sync_id=self.sync_id, customer_id=cid, error=error)


def _numeric_id(cid: str) -> int | str:
    tail = cid.rsplit("/", 1)[-1]  # bulk lines carry gids
    return int(tail) if tail.isdigit() else cid


# --- the watchdog --------------------------------------------------------------------------


async def full_sync_watchdog(ctx: dict[str, Any]) -> dict[str, Any]:
    app: WorkerContext = ctx["app"]
    revived = 0
    for raw in await typed(app.redis.smembers(control.active_set(app.keys))):
        sync_id = raw.decode()
        try:
            revived += await supervise(app, sync_id)
        except Exception as exc:  # one sync's trouble must not stop the others' supervision
            log.warning("full_sync_watchdog_failed", sync_id=sync_id, error=f"{type(exc).__name__}: {exc}")
    return {"revived": revived}


async def _job_alive(app: WorkerContext, job_id: str) -> bool | None:
    """True: waiting in the queue; None: started (in progress); False: gone from the queue."""
    if await app.redis.zscore(app.keys.fullsync_queue, job_id) is None:
        return False
    return None if await app.redis.exists(f"arq:in-progress:{job_id}") else True


async def supervise(app: WorkerContext, sync_id: str, *, grace_s: float = 2.0) -> int:
    """Re-enqueue the walk or batches of `sync_id` whose job died; finish it if all is done."""
    sk = SyncKeys(app.keys, sync_id)
    record = await load(app, sync_id)
    if record is None or record.get("state") != RUNNING:
        await typed(app.redis.srem(control.active_set(app.keys), sync_id))
        return 0
    suspects: list[tuple[str, str]] = []  # (lease name, job id)
    if not record.get("walk_done"):
        gen = int(record.get("walk_gen") or 0)
        suspects.append(("walk", control.walk_job_id(sync_id, gen)))
    pending = {k.decode(): v.decode() for k, v in (await typed(app.redis.hgetall(sk.pending))).items()}
    suspects += list(pending.items())
    dead: list[tuple[str, str]] = []
    for name, job_id in suspects:
        if await app.redis.exists(sk.lease(name)):
            continue
        if await _job_alive(app, job_id) is not True:
            dead.append((name, job_id))
    if dead:
        await asyncio.sleep(grace_s)  # a job that just started takes its lease in a moment
    revived = 0
    for name, job_id in dead:
        if await app.redis.exists(sk.lease(name)) or await _job_alive(app, job_id) is True:
            continue
        current = await load(app, sync_id) or {}
        if name == "walk":
            if current.get("walk_done"):
                continue
            gen = int(current.get("walk_gen") or 0)
            if control.walk_job_id(sync_id, gen) != job_id:
                continue  # the walk handed over meanwhile
            await _hand_over(app, sync_id, gen)
        else:
            if await typed(app.redis.hget(sk.pending, name)) is None:
                continue  # done meanwhile
            new_id = f"{control.batch_job_id(sync_id, int(name))}:r{os.urandom(3).hex()}"
            async with app.redis.pipeline(transaction=True) as pipe:
                pipe.hset(sk.pending, name, new_id)
                _enqueue(pipe, app, new_id, control.BATCH_FUNCTION, (sync_id, int(name)))
                await pipe.execute()
        revived += 1
        await typed(app.redis.hincrby(sk.record, "revived", 1))
        log.warning("full_sync_job_revived", sync_id=sync_id, part=name, dead_job=job_id)
    if record.get("walk_done") and not pending:
        await maybe_finish(app, sync_id)
    return revived


# --- reconciliation ------------------------------------------------------------------------


def reconcile_attempt_key(app: WorkerContext, shop: str) -> str:
    return f"{app.keys.prefix}:fullsync-reconciled:{shop}"


async def full_sync_reconcile(ctx: dict[str, Any]) -> dict[str, Any]:
    app: WorkerContext = ctx["app"]
    started = await reconcile_due(app, time.time())
    return {"started": started}


async def reconcile_due(app: WorkerContext, now: float) -> list[str]:
    """Start a reconciliation of every shop whose interval has passed since its last walk."""
    started: list[str] = []
    for shop in app.installations.shops.values():
        if await typed(app.redis.sismember(app.keys.uninstalled, shop.domain)):
            continue
        raw = await app.redis.get(control.walked_key(app.keys, shop.domain))
        if raw is None:
            continue  # never fully synced: reconciliation repairs a synced store, it does not seed one
        walked_from = float(orjson.loads(raw)["started_at"])
        attempted = await app.redis.get(reconcile_attempt_key(app, shop.domain))
        last = max(walked_from, float(attempted) if attempted else 0.0)
        if now - last < shop.sync.reconcile_interval_s:
            continue
        await app.redis.set(reconcile_attempt_key(app, shop.domain), str(now), ex=30 * 24 * 3600)
        since = datetime.fromtimestamp(walked_from - RECONCILE_MARGIN_S, UTC).isoformat()
        result = await control.start_full_sync(
            app.redis, app.keys, shop.domain, kind="reconcile", updated_at_min=since
        )
        if result.started:
            started.append(result.sync_id)
            log.info("reconcile_started", shop=shop.domain, sync_id=result.sync_id, updated_at_min=since)
    return started


# --- registration --------------------------------------------------------------------------


def functions() -> list[Any]:
    return [
        func(full_sync_walk, name=control.WALK_FUNCTION, timeout=JOB_TIMEOUT_S, keep_result=0),
        func(full_sync_batch, name=control.BATCH_FUNCTION, timeout=JOB_TIMEOUT_S, keep_result=0),
    ]


def cron_jobs(installations: Installations) -> list[CronJob]:
    # Cheap when idle: one SMEMBERS, one GET per shop. Unique per run across every worker.
    return (
        [
            cron(
                full_sync_watchdog,
                name="full_sync_watchdog",
                second=set(WATCHDOG_SECONDS),
                run_at_startup=True,
                timeout=CRON_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
            cron(
                full_sync_reconcile,
                name="full_sync_reconcile",
                second=0,
                timeout=CRON_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
        ]
        if installations.shops
        else []
    )
