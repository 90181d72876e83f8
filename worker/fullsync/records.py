"""A full sync's record in the worker: read it, fail it, finish it, trim the history of old ones.

`maybe_finish` ends a sync exactly once (a Lua script checks that the walk is over and no batch
is pending), then writes the duration, rate and the "last complete walk" reconciliation starts
from, and keeps only the newest `HISTORY` finished records. `enqueue_job` is arq's enqueue as two
commands for the caller's transaction, so a batch or a revived job goes to the queue together
with the state that names it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import structlog

from core import fullsync_control as control
from core.fullsync_control import SyncKeys
from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.redis_conn import typed
from worker.context import WorkerContext
from worker.fair_dispatch import push_ready

log = structlog.get_logger("worker.fullsync")

HISTORY = 500  # finished sync records kept for status

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


async def load(app: WorkerContext, sync_id: str) -> dict[str, Any] | None:
    return await control.read_sync(app.redis, app.keys, sync_id)


def enqueue_job(
    pipe: Any,
    app: WorkerContext,
    job_id: str,
    function: str,
    args: tuple[Any, ...],
    *,
    shop: str | None = None,
) -> None:
    """arq's enqueue (job key + queue entry), inside the caller's transaction. With `shop`, the
    job goes to the shop's ready list instead, and the fair dispatcher puts it on the queue at
    the shop's turn (worker/fair_dispatch.py)."""
    pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, job_bytes(function, args))
    if shop is not None:
        push_ready(pipe, app.keys, shop, job_id)
    else:
        pipe.zadd(app.keys.fullsync_queue, {job_id: now_ms()})


async def fail_sync(app: WorkerContext, sync_id: str, shop: str, error: str) -> None:
    if await control.end_sync(app.redis, app.keys, sync_id, shop, error):
        log.error("full_sync_failed", sync_id=sync_id, shop=shop, error=error)
    else:  # finished, failed or cancelled meanwhile: that stands
        log.info("full_sync_already_ended", sync_id=sync_id, shop=shop, error=error)


async def maybe_finish(app: WorkerContext, sync_id: str) -> bool:
    """Finish the sync if the walk is over and every batch is done (exactly one caller wins)."""
    sk = SyncKeys(app.keys, sync_id)
    record = await load(app, sync_id)
    if record is None:
        return False
    shop = str(record["shop"])
    finished_at = time.time()
    won = await app.script(_FINISH)(
        keys=[sk.record, sk.pending, app.keys.full_sync(shop), control.active_set(app.keys)],
        args=[orjson.dumps(finished_at), sync_id],
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
