"""The full sync's coordinator: the walk reads the store a page at a time into batches.

One walk job at a time per sync, holding the sync's walk lease, reads customers a page
(`PAGE_SIZE`) at a time, REST or from a bulk export (`worker.fullsync.source`), and turns each
page into a batch: the page's customers, the batch's job and the walk's checkpoint (next cursor,
lines read) go to Redis in one transaction, so a crash either loses the page (read again) or
keeps it and its cursor together, never a batch twice. It never runs more than `MAX_AHEAD`
batches ahead of the batch workers, and hands over to a fresh job of itself (`hand_over`) every
`WALK_SLICE_S` so no job runs for hours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from redis.exceptions import WatchError

from core import fullsync_control as control
from core.fullsync_control import RUNNING, SyncKeys
from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.redis_conn import typed
from core.settings import env_int
from mappings.installation import Shop
from worker import lanes
from worker.context import WorkerContext
from worker.fullsync.lease import Lease
from worker.fullsync.records import enqueue_job, fail_sync, load, maybe_finish
from worker.fullsync.source import bulk_lines, customer_fields, customer_page
from worker.runtime import TransientError, is_transient

log = structlog.get_logger("worker.fullsync")

PAGE_SIZE = 250
# Batches enqueued and not done; the coordinator waits above it (Redis holds at most this many
# pages). Four keep 64 customers of the sync in flight (16 a batch), more than one APSIS
# account's 100 requests/s need. Not more: the batches of a sync run side by side at its
# account's pace and end together, and 12 of them meant a refill of 12 pages (Shopify reads, 12
# batches starting) every minute or so, in the seconds of which the other shops' webhook p99 rose
# to 100-240 ms; with 4 the refills are a third as big and three times as frequent (the fairness
# benchmark, docs/PERFORMANCE-LOG.md "Many shops"). A sync that skips most customers is CPU-bound
# instead and uses up to this many processes' batch slots.
MAX_AHEAD = env_int("SHOPSYNC_FULLSYNC_MAX_AHEAD", 4, minimum=1)
WALK_SLICE_S = 120.0
WALK_TIMEOUT_S = WALK_SLICE_S + 120  # the slice, then finishing the page or export poll under way
BULK_POLL_S = 2.0
ROOM_WAIT_S = 5.0  # a REST walk waits this long for room, then hands over (worker/fair_dispatch.py)
ROOM_DEFER_S = 2.0
# Walk paths besides the per-profile one register here (worker/fullsync/imports.py): given the
# slice's walker, a walker of their own to use instead, or None.
PATHS: list[Callable[[_Walker], Awaitable[_Walker | None]]] = []


async def walk_slice(
    app: WorkerContext, sync_id: str, gen: int, lease_token: str | None = None
) -> dict[str, Any]:
    """One slice of the walk (`WALK_SLICE_S`), in this process; the job that runs it, in this
    process or a child, is `worker.fullsync.walk_process.full_sync_walk`. In a child, the walk's
    lease is the one its worker took under `lease_token`."""
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
        # Parked, not failed: the shop was removed from the installations file (maybe for a
        # moment); the watchdog leaves its sync alone and revives the walk once it is back.
        log.warning(
            "full_sync_parked", sync_id=sync_id, shop=record["shop"], reason="not in the installations file"
        )
        return {"parked": control.PARKED}
    lanes.enter(shop.domain)
    if await typed(app.redis.sismember(app.keys.uninstalled, shop.domain)):
        await fail_sync(app, sync_id, shop.domain, "the shop uninstalled the app")
        return {"failed": "shop uninstalled"}
    lease = Lease(app, SyncKeys(app.keys, sync_id).lease("walk"), lease_token)
    if not await lease.acquire():
        return {"skipped": "walk lease held"}
    try:
        walker = _Walker(app, shop, sync_id, record, lease)
        for choose in PATHS:  # another path (profile imports, worker/fullsync/imports.py) may take it
            walker = await choose(walker) or walker
        deadline = time.monotonic() + WALK_SLICE_S
        done = await walker.run(deadline)
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
        await hand_over(app, sync_id, gen, defer_s=walker.defer_s)
    return {"pages": walker.pages, "walk_done": done}


async def hand_over(app: WorkerContext, sync_id: str, gen: int, *, defer_s: float = 0.0) -> None:
    """Continue the walk in a new job (the next slice), unless the walk moved on meanwhile."""
    sk = SyncKeys(app.keys, sync_id)
    job_id = control.walk_job_id(sync_id, gen + 1)
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.hset(sk.record, mapping={"walk_gen": gen + 1})
        pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, job_bytes(control.WALK_FUNCTION, (sync_id, gen + 1)))
        pipe.zadd(app.keys.fullsync_queue, {job_id: now_ms() + int(defer_s * 1000)})
        await pipe.execute()


class _Walker:
    """Reads the store a page at a time into batches (the per-profile path)."""

    def __init__(
        self, app: WorkerContext, shop: Shop, sync_id: str, record: dict[str, Any], lease: Lease
    ) -> None:
        self.app, self.shop, self.sync_id, self.record, self.lease = app, shop, sync_id, record, lease
        self.keys = SyncKeys(app.keys, sync_id)
        self.batch = int(record.get("batches") or 0)
        self.pages = 0
        self.walked = 0  # customers batched by this slice
        self.defer_s = 0.0

    async def run(self, deadline: float) -> bool:
        """Walk until the slice's deadline; True when the walk is over."""
        if self.record.get("source") == "bulk":
            return await self.bulk(deadline)
        return await self.rest(deadline)

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
                # To the shop's ready list: the fair dispatcher hands it a slot (worker/fair_dispatch.py).
                enqueue_job(
                    pipe, self.app, job_id, control.BATCH_FUNCTION, (self.sync_id, n), shop=self.shop.domain
                )
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
            # A walk waiting for room must not hold a job slot the batches need (with many shops
            # syncing, waiting walks took every slot): after ROOM_WAIT_S it hands over, deferred.
            if not await self._room(min(deadline, time.monotonic() + ROOM_WAIT_S)):
                self.defer_s = ROOM_DEFER_S
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
        # The checkpoint: lines read, and the byte offset past them (a resumed slice downloads
        # from there where storage serves ranges; worker/shopify_bulk.py).
        lines = int(self.record.get("lines") or 0)
        offset = int(self.record.get("offset") or 0)
        chunk: list[dict[str, Any]] = []
        async for raw, past in bulk_lines(client, str(url), lines, offset):
            line = orjson.loads(raw)
            lines += 1
            offset = past
            if "__parentId" not in line:
                chunk.append(line)
            if len(chunk) >= PAGE_SIZE:
                if not await self._room(deadline):
                    return False  # the chunk is re-read from the checkpoint by the next slice
                await self._emit(chunk, {"lines": lines, "offset": offset}, done=False)
                chunk = []
                if time.monotonic() > deadline:
                    return False
        if chunk and not await self._room(float("inf")):
            return False
        await self._emit(chunk, {"lines": lines, "offset": offset}, done=True)
        return True
