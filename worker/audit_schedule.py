"""Scheduled drift audits: `[shop.sync] audit_interval` runs `worker.audit.run_audit` in the pool.

    audit_tick (cron, the real-time worker, once a minute)
        per shop with an interval: due?  -> SET audit_queued NX -> enqueue `scheduled_audit`
    scheduled_audit (the audit queue)
        take the shop's lease (SET NX PX, renewed) -> due again? -> audit -> save -> release

Due: no lease held, the last audit's result (`Keys.audit`, which a `shopsync audit` from the
shell writes too) is at least an interval old, and the last failure (`Keys.audit_schedule`) at
least `min(interval, RETRY_AFTER_FAILURE_S)` ago.

At most one audit per shop runs at a time across the pool: the job runs only while it holds the
shop's lease (`Keys.audit_lease`), which it renews every `RENEW_S` and which lapses
`LEASE_TTL_MS` after its holder died; a job that loses it stops. Crash-safe without arq's help:
a killed worker's audit leaves no fresh result and its lease lapses, so the next tick enqueues a
new one (arq's own re-run of the dead job, after its in-progress mark expires, finds the audit
not due or the lease held, and ends). Two ticks at once, or a job enqueued twice, cost nothing:
the queued mark and the lease let one through.

Low priority: the job runs on its own queue (`Keys.audit_queue`, one job slot per worker process)
so its long timeout never delays the re-run of a killed worker's full-sync jobs (arq holds those
back for its longest function timeout), and its API calls take the bulk lane (`worker.lanes`):
the share a full sync has, behind real-time work, inside the shop's and the account's limits.
A repair runs only with `[shop.sync] audit_repair = true`, each differing customer's fix enqueued
as it is found (`worker.audit_repair.repair_one`: a repair never opts in anyone whom Shopify
does not show subscribed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import orjson
import structlog
from arq.cron import CronJob, cron
from arq.worker import func

from core.redis_conn import typed
from mappings.audit import Difference
from mappings.installation import Installations, Shop
from worker import lanes
from worker.audit import run_audit, save_result
from worker.audit_repair import repair_one
from worker.context import WorkerContext

log = structlog.get_logger("worker.audit")

FUNCTION = "scheduled_audit"
AUDIT_TIMEOUT_S = 12 * 3600  # arq's limit: an audit of a large store through per-profile reads
LEASE_TTL_MS = 60_000
RENEW_S = 15.0
QUEUED_TTL_S = 3600
RETRY_AFTER_FAILURE_S = 900.0
TICK_SECOND = 30
MAX_JOBS = 1  # audits at once per worker process

# KEYS: lease. ARGV: holder, ttl ms. 1 when renewed (still ours).
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def due(app: WorkerContext, shop: Shop, now: float, *, lease_free: bool = True) -> bool:
    interval = shop.sync.audit_interval_s
    if interval is None:
        return False
    keys, domain = app.keys, shop.domain
    async with app.redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.audit(domain))
        pipe.hget(keys.audit_schedule(domain), "failed_at")
        pipe.exists(keys.audit_lease(domain))
        raw, failed_at, leased = await pipe.execute()
    if lease_free and leased:
        return False
    last = float(orjson.loads(raw).get("at") or 0) if raw else 0.0
    if now < last + interval:
        return False
    return not (failed_at and now < float(failed_at) + min(interval, RETRY_AFTER_FAILURE_S))


async def tick(app: WorkerContext, now: float | None = None) -> list[str]:
    """Enqueue the audit of every shop that is due and not queued yet; the shops enqueued."""
    now = time.time() if now is None else now
    enqueued: list[str] = []
    for shop in app.installations.shops.values():
        if not await due(app, shop, now):
            continue
        if not await app.redis.set(app.keys.audit_queued(shop.domain), str(now), nx=True, ex=QUEUED_TTL_S):
            continue
        await app.redis.enqueue_job(
            FUNCTION,
            shop.domain,
            _queue_name=app.keys.audit_queue,
            _job_id=f"audit-{shop.domain}-{uuid.uuid4().hex[:12]}",
        )
        enqueued.append(shop.domain)
        log.info("audit_scheduled", shop=shop.domain)
    return enqueued


async def audit_tick(ctx: dict[str, Any]) -> list[str]:
    return await tick(ctx["app"])


async def scheduled_audit(ctx: dict[str, Any], domain: str) -> dict[str, Any]:
    """The job: one scheduled audit of the shop, if it is still due and no other one runs."""
    app: WorkerContext = ctx["app"]
    await typed(app.redis.delete(app.keys.audit_queued(domain)))
    shop = app.installations.get(domain)
    if shop is None or shop.sync.audit_interval_s is None:
        return {"skipped": "no scheduled audit for the shop"}
    lease, holder = app.keys.audit_lease(domain), f"{app.worker_id}:{uuid.uuid4().hex[:8]}"
    if not await app.redis.set(lease, holder, nx=True, px=LEASE_TTL_MS):
        return {"skipped": "another audit of the shop runs"}
    audit_task = asyncio.current_task()
    renewing = asyncio.create_task(_renew(app, lease, holder, audit_task))
    try:
        if not await due(app, shop, time.time(), lease_free=False):
            return {"skipped": "not due"}
        return await _run(app, shop)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        await app.script(_RELEASE)(keys=[lease], args=[holder])


async def _run(app: WorkerContext, shop: Shop) -> dict[str, Any]:
    schedule = app.keys.audit_schedule(shop.domain)
    await typed(app.redis.hset(schedule, mapping={"started_at": time.time(), "holder": app.worker_id}))
    lanes.enter(shop.domain, "bulk")
    repaired = {"resync": 0, "delete": 0, "remove": 0}

    async def fix(cid: int, differences: list[Difference], customer: dict[str, Any] | None) -> None:
        kind = await repair_one(app, shop, cid, differences, customer)
        if kind is not None:
            repaired[kind] += 1

    try:
        audit = await run_audit(app, shop, on_drift=fix if shop.sync.audit_repair else _keep_nothing)
    except Exception as exc:  # recorded; the tick tries again after RETRY_AFTER_FAILURE_S
        error = f"{type(exc).__name__}: {exc}"[:300]
        await typed(app.redis.hset(schedule, mapping={"failed_at": time.time(), "error": error}))
        log.warning("audit_failed", shop=shop.domain, error=error)
        return {"failed": error}
    result = await save_result(app, shop, audit, repaired if shop.sync.audit_repair else {})
    await typed(app.redis.hset(schedule, mapping={"finished_at": time.time()}))
    await typed(app.redis.hdel(schedule, "failed_at", "error"))
    return {
        "audited": shop.domain,
        **{k: result[k] for k in ("customers", "missing", "extra", "attribute", "consent")},
    }


async def _keep_nothing(cid: int, differences: list[Difference], customer: dict[str, Any] | None) -> None:
    """Without a repair a scheduled audit keeps only the counts and examples (no customers)."""


async def _renew(app: WorkerContext, lease: str, holder: str, audit: asyncio.Task[Any] | None) -> None:
    while True:
        await asyncio.sleep(RENEW_S)
        try:
            kept = await app.script(_RENEW)(keys=[lease], args=[holder, str(LEASE_TTL_MS)])
        except Exception as exc:  # a Redis blip: the lease has LEASE_TTL_MS to be renewed
            log.warning("audit_lease_renew_failed", error=str(exc))
            continue
        if not kept:
            log.warning("audit_lease_lost", lease=lease)
            if audit is not None:
                audit.cancel()
            return


def functions() -> list[Any]:
    return [func(scheduled_audit, name=FUNCTION, timeout=AUDIT_TIMEOUT_S, keep_result=0, max_tries=1)]


def cron_jobs(installations: Installations) -> list[CronJob]:
    """The tick, on the real-time worker (unique per run across the pool); cheap without intervals
    (no Redis call), and registered for any shop so a reload that adds an interval is served."""
    if not installations.shops:
        return []
    return [
        cron(audit_tick, name="audit_tick", second=TICK_SECOND, timeout=20, keep_result=0, max_tries=1),
    ]
