"""The full sync's watchdog: re-enqueue a walk or batch whose job died, finish what is done.

`full_sync_watchdog` (cron, every few seconds, on the real-time worker) runs `supervise` for
every running sync: a part whose lease has lapsed and whose job is no longer waiting in the
queue gets a new job (arq would re-run it only after its in-progress key expires, job timeout +
10 s; leases tell sooner). Superseded jobs find they have nothing to do.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog

from core import fullsync_control as control
from core.fullsync_control import RUNNING, SyncKeys
from core.redis_conn import typed
from worker.context import WorkerContext
from worker.fair_dispatch import is_ready
from worker.fullsync.records import enqueue_job, load, maybe_finish
from worker.fullsync.walker import hand_over

log = structlog.get_logger("worker.fullsync")


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


async def _job_alive(app: WorkerContext, job_id: str, shop: str = "") -> bool | None:
    """True: waiting in the queue or the shop's ready list; None: started (in progress); False:
    gone from both."""
    if await app.redis.zscore(app.keys.fullsync_queue, job_id) is None:
        return bool(shop) and await is_ready(app.redis, app.keys, shop, job_id)
    return None if await app.redis.exists(f"arq:in-progress:{job_id}") else True


async def supervise(app: WorkerContext, sync_id: str, *, grace_s: float = 2.0) -> int:
    """Re-enqueue the walk or batches of `sync_id` whose job died; finish it if all is done."""
    sk = SyncKeys(app.keys, sync_id)
    record = await load(app, sync_id)
    if record is None or record.get("state") != RUNNING:
        await typed(app.redis.srem(control.active_set(app.keys), sync_id))
        return 0
    shop = str(record.get("shop") or "")
    if app.installations.get(shop) is None:
        return 0  # parked while the shop is out of the installations file (its jobs wait)
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
        if await _job_alive(app, job_id, shop) is not True:
            dead.append((name, job_id))
    if dead:
        await asyncio.sleep(grace_s)  # a job that just started takes its lease in a moment
    revived = 0
    for name, job_id in dead:
        if await app.redis.exists(sk.lease(name)) or await _job_alive(app, job_id, shop) is True:
            continue
        current = await load(app, sync_id) or {}
        if name == "walk":
            if current.get("walk_done"):
                continue
            gen = int(current.get("walk_gen") or 0)
            if control.walk_job_id(sync_id, gen) != job_id:
                continue  # the walk handed over meanwhile
            await hand_over(app, sync_id, gen)
        else:
            if await typed(app.redis.hget(sk.pending, name)) is None:
                continue  # done meanwhile
            new_id = f"{control.batch_job_id(sync_id, int(name))}:r{os.urandom(3).hex()}"
            async with app.redis.pipeline(transaction=True) as pipe:
                pipe.hset(sk.pending, name, new_id)
                enqueue_job(pipe, app, new_id, control.BATCH_FUNCTION, (sync_id, int(name)), shop=shop)
                await pipe.execute()
        revived += 1
        await typed(app.redis.hincrby(sk.record, "revived", 1))
        log.warning("full_sync_job_revived", sync_id=sync_id, part=name, dead_job=job_id)
    if record.get("walk_done") and not pending:
        await maybe_finish(app, sync_id)
    return revived
