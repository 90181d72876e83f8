"""Merging a backlog of real-time updates per customer into one apply.

A webhook job normally deposits its update and applies the customer's pending updates at once
(`worker.sync.submit`). When the real-time queue is behind, that spends one APSIS write per
queued update, most of them states that later updates, still in the queue, already overtake.
So a webhook job that finds the worker behind (its delivery, or the oldest due apply job, waited
longer than `BEHIND_S`), or finds an apply already scheduled for its customer, only deposits its
update and makes sure the customer has ONE "apply customer" job, deferred so that the customer's
later updates reach the pending hash before it runs; that job then folds them all into one apply
(`apply_pending`). Applies waiting for APSIS merge further: a customer's updates keep joining
its apply job for as long as it waits in the queue.

Why there is always exactly one job to apply what was deposited, and never a stranded update:
- The marker (`Keys.customer_apply`) holds the id of the customer's apply job. The deposit, the
  marker and the job itself (arq's job key and queue entry, as `enqueue_job` writes them) are
  written by ONE Lua script: no moment exists at which an update is deposited and relies on a
  job that is not there yet, so no crash can orphan it. A retried webhook job runs the script
  again: its update is deposited again (same id, same value) and the live marker is reused.
- A marker counts only while its job's key exists. arq keeps that key while the job waits, runs,
  or waits for a retry (a worker killed mid-apply included: arq runs the job again, same id,
  once its in-progress mark expires) and deletes it when the job ends for good (a dead letter,
  say). A marker whose job is gone is replaced, so no deposit waits on a job that will not run.
- The apply job clears the marker only in a script that also finds the pending hash empty: a
  deposit lands either before (the job sees it and applies again) or after (it finds no marker
  and schedules a job or applies by itself). Every scheduling takes a fresh job id, so a
  finished job's key, kept result or retry count never blocks or confuses the next one.
- An apply job that has run for `APPLY_BUDGET_S` (a customer edited without pause, or a lock
  held elsewhere) hands the marker over to a new job in the same way instead of timing out.

Apply jobs have their own queue (`Keys.apply_queue`) and job slots (`APPLY_MAX_JOBS` per
process). They are the APSIS-bound work: each waits its turn at the APSIS rate limit while it
runs. On the real-time queue, a backlog of them held every job slot, and the cheap deposits
behind them (which make the merging possible) ran only as fast as APSIS freed slots.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from arq.constants import job_key_prefix

from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from mappings.installation import Shop
from worker.context import WorkerContext
from worker.customer_store import LOCK_TTL_MS, PENDING_TTL_S, Locked, locked_from, new_token
from worker.realtime_lag import BEHIND_S
from worker.sync import Applied, apply_pending

APPLY_JOB = "apply_customer"
JOB_ID_PREFIX = "apply-"  # tells apply jobs apart in the queue (`shopsync jobs`, the load scenario)
# A delivery that waited longer than BEHIND_S (worker/realtime_lag.py) in the queue means the
# worker is behind: real-time jobs otherwise start within tens of milliseconds.
# How long an apply waits at most. The customer's later updates already queued reach the worker
# within about the time this one waited (the queue is first in, first out), and a burst that
# made the worker fall behind tends to go on for as long: so the apply waits as long as the
# update did, but no more than this, which bounds what merging adds to an update's latency.
DEFER_CAP_S = 30.0
# One apply job's time before it hands over to a fresh one (well inside the job timeout).
APPLY_BUDGET_S = 15.0
HANDOVER_DEFER_S = 1.0
# Apply jobs one worker process runs at once: enough to keep APSIS's 100 requests/s busy (each
# apply is one to a few requests, paced by the shared limiter) without a long wait at the limiter.
APPLY_MAX_JOBS = 32
# A webhook behind only by its own wait defers anyway when its shop's APSIS account has more than
# this reserved ahead: applied now, it would hold a real-time job slot waiting at the limiter
# (the p99 goal is 500 ms).
APSIS_QUEUED_S = 0.5

End = Literal["done", "more", "other", "handed"]

# Deposit an update; decide whether the caller applies it now or the customer's apply job will.
# KEYS: pending hash, marker, apply queue, then (webhook jobs) the customer's lock, state and
# staged writes, the uninstalled set, the customer's burst mark and the shop's APSIS account
# bucket. ARGV: update id, update JSON, pending ttl (s), lag (ms), new job id, new job bytes,
# now (ms), job ttl (ms), arq job key prefix, BEHIND_S and DEFER_CAP_S (ms), then the lock's
# token and ttl (ms), the shop and APSIS_QUEUED_S (us).
# Behind means this update waited over BEHIND_S, or the oldest due apply job did (APSIS is
# behind: an update applied now would only wait at the rate limit, holding a real-time job
# slot). A webhook behind by its own wait only (the real-time queue, not the applies) still
# applies now unless merging can pay: the customer had an update deposited within the lag (its
# burst mark: later ones are likely queued too) or its shop's APSIS account has more than
# APSIS_QUEUED_S of requests reserved ahead (an apply would wait there holding a real-time slot).
# Deferring a lone update costs a second job and its lag again; when the backlog is the pool's
# CPU (many shops, distinct customers) that made each webhook dearer exactly when the pool was
# short of CPU, and the backlog grew instead of draining (docs/PERFORMANCE-LOG.md, "Many shops").
# Returns 'uninstalled' (nothing deposited), {} (apply now), {'locked', pending, state, staged}
# (apply now: the lock is taken and read as `CustomerStore.lock_and_read` does, one round trip
# less) or {job id, 1 if this call scheduled it else 0}.
_DEPOSIT = """
if #KEYS > 3 and redis.call('SISMEMBER', KEYS[7], ARGV[14]) == 1 then return 'uninstalled' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local current = redis.call('GET', KEYS[2])
if current and redis.call('EXISTS', ARGV[9] .. current) == 1 then return {current, 0} end
local now, lag, behind = tonumber(ARGV[7]), tonumber(ARGV[4]), tonumber(ARGV[10])
local applies = 0
local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if oldest[2] then applies = now - tonumber(oldest[2]) end
local apply_now = lag <= behind and applies <= behind
if not apply_now and applies <= behind and #KEYS > 7 and redis.call('EXISTS', KEYS[8]) == 0 then
  local t = redis.call('TIME')
  local reserved = tonumber(redis.call('GET', KEYS[9]) or '0') - (tonumber(t[1]) * 1000000 + tonumber(t[2]))
  if reserved <= tonumber(ARGV[15]) then
    redis.call('SET', KEYS[8], '1', 'PX', math.floor(math.min(lag, tonumber(ARGV[11]))))
    apply_now = true
  end
end
if applies > lag then lag = applies end
if apply_now then
  if current then redis.call('DEL', KEYS[2]) end
  if #KEYS > 3 and redis.call('SET', KEYS[4], ARGV[12], 'NX', 'PX', ARGV[13]) then
    return {'locked', redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[5]), redis.call('GET', KEYS[6])}
  end
  return {}
end
local defer = math.floor(math.min(lag, tonumber(ARGV[11])))
local ttl = tonumber(ARGV[8]) + defer
redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
redis.call('PSETEX', ARGV[9] .. ARGV[5], ttl, ARGV[6])
redis.call('ZADD', KEYS[3], now + defer, ARGV[5])
return {ARGV[5], 1}
"""
# The end of an apply round. KEYS: marker, pending hash, queue. ARGV: this job's id, hand over
# ('1' or ''), then as above: new job id, job bytes, now (ms), defer (ms), job ttl (ms), prefix.
# A job the marker does not name (a replayed dead letter) leaves a live marker alone and removes
# a stale one once nothing is pending.
_FINISH = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  if current and redis.call('EXISTS', ARGV[8] .. current) == 0 and redis.call('HLEN', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[1])
  end
  return 'other'
end
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 'done'
end
if ARGV[2] == '' then return 'more' end
local ttl = tonumber(ARGV[7]) + tonumber(ARGV[6])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
redis.call('PSETEX', ARGV[8] .. ARGV[3], ttl, ARGV[4])
redis.call('ZADD', KEYS[3], tonumber(ARGV[5]) + tonumber(ARGV[6]), ARGV[3])
return 'handed'
"""


def apply_arg(shop: str, customer_id: int) -> dict[str, Any]:
    """The apply job's one argument (what `shopsync jobs` and dead-letter replay see)."""
    return {"shop": shop, "customer_id": customer_id}


def _new_job(shop: str, customer_id: int) -> tuple[str, bytes]:
    return JOB_ID_PREFIX + os.urandom(12).hex(), job_bytes(APPLY_JOB, (apply_arg(shop, customer_id),))


@dataclass(frozen=True, slots=True)
class Scheduled:
    job_id: str
    created: bool  # this deposit scheduled the job (else it joined one already waiting)


@dataclass(frozen=True, slots=True)
class Deposited:
    """What a webhook's deposit found (`deposit_webhook`)."""

    uninstalled: bool = False  # the shop is uninstalled: nothing was deposited
    scheduled: Scheduled | None = None  # the customer's apply job applies it
    locked: Locked | None = None  # apply now, the lock taken and read


async def deposit(
    app: WorkerContext, shop: str, customer_id: int, update_id: str, update: dict[str, Any], lag_s: float
) -> Scheduled | None:
    """Deposit an update that waited `lag_s` in the queue. None: nothing is scheduled and the
    worker is not behind, the caller applies now (`submit(..., deposited=True)`). Else the apply
    job that will: scheduled now when none is, deferred by how far behind the worker is (this
    update's wait, or the oldest due apply job's), at most `DEFER_CAP_S`."""
    reply = await _deposit(app, shop, customer_id, update_id, update, lag_s, None)
    return _scheduled(reply) if reply else None


async def deposit_webhook(
    app: WorkerContext,
    shop: Shop,
    customer_id: int,
    update_id: str,
    update: dict[str, Any],
    lag_s: float,
) -> Deposited:
    """`deposit` for a webhook job, in the same round trip: nothing when the shop is uninstalled,
    and when it applies now, the customer's lock taken and read (else `submit` takes it). Behind
    by its own wait only, it applies now unless merging can pay (see `_DEPOSIT`)."""
    token = new_token()
    bucket = app.apsis(shop).account_bucket.name  # the bucket the apply's requests draw from
    reply = await _deposit(app, shop.domain, customer_id, update_id, update, lag_s, token, bucket)
    if reply == b"uninstalled":
        return Deposited(uninstalled=True)
    if not reply:
        return Deposited()
    if reply[0] == b"locked":
        return Deposited(locked=locked_from(token, reply[1:]))
    return Deposited(scheduled=_scheduled(reply))


async def _deposit(
    app: WorkerContext,
    shop: str,
    customer_id: int,
    update_id: str,
    update: dict[str, Any],
    lag_s: float,
    token: str | None,
    apsis_bucket: str | None = None,
) -> Any:
    job_id, job = _new_job(shop, customer_id)
    keys = [
        app.customers.pending_key(shop, customer_id),
        app.keys.customer_apply(shop, customer_id),
        app.keys.apply_queue,
    ]
    args: list[Any] = [
        update_id,
        orjson.dumps(update),
        PENDING_TTL_S,
        max(0, int(lag_s * 1000)),
        job_id,
        job,
        now_ms(),
        JOB_TTL_MS,
        job_key_prefix,
        int(BEHIND_S * 1000),
        int(DEFER_CAP_S * 1000),
    ]
    if token is not None:
        lock, _pending, state, staged = app.customers.lock_keys(shop, customer_id)
        keys += [lock, state, staged, app.keys.uninstalled]
        keys += [app.keys.customer_burst(shop, customer_id), app.keys.limiter(apsis_bucket or "")]
        args += [token, LOCK_TTL_MS, shop, int(APSIS_QUEUED_S * 1_000_000)]
    return await app.script(_DEPOSIT)(keys=keys, args=args)


def _scheduled(reply: list[Any]) -> Scheduled:
    scheduled, created = reply
    return Scheduled(
        scheduled.decode() if isinstance(scheduled, bytes) else str(scheduled), bool(int(created))
    )


async def finish(app: WorkerContext, shop: str, customer_id: int, job_id: str, *, hand_over: bool) -> End:
    """done: nothing pending, marker cleared. more: deposits arrived, apply again. other: the
    marker is not this job's (a replayed dead letter, or handed over). handed: a new job goes on."""
    new_id, job = _new_job(shop, customer_id)
    script = app.script(_FINISH)
    reply = await script(
        keys=[
            app.keys.customer_apply(shop, customer_id),
            app.customers.pending_key(shop, customer_id),
            app.keys.apply_queue,
        ],
        args=[
            job_id,
            "1" if hand_over else "",
            new_id,
            job,
            now_ms(),
            int(HANDOVER_DEFER_S * 1000),
            JOB_TTL_MS,
            job_key_prefix,
        ],
    )
    end = reply.decode() if isinstance(reply, bytes) else str(reply)
    assert end in ("done", "more", "other", "handed"), end
    return end  # type: ignore[return-value]


async def apply_customer(app: WorkerContext, shop: Shop, customer_id: int, job_id: str) -> dict[str, Any]:
    """The apply job's body: apply everything pending until nothing is, then clear the marker."""
    started = time.monotonic()
    rounds = updates = writes = 0
    delay = 0.01
    while True:
        applied = await apply_pending(app, shop, customer_id)
        if applied is None:
            # Another worker holds the lock and applies what is pending: wait for it.
            await asyncio.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 0.2)
        elif applied.outcomes:
            rounds += 1
            updates += len(applied.outcomes)
            writes += applied.writes
            _count(app, applied)
        hand_over = time.monotonic() - started > APPLY_BUDGET_S
        end = await finish(app, shop.domain, customer_id, job_id, hand_over=hand_over)
        if end != "more":
            break
    app.metrics.inc("shopsync_apply_jobs_total", {"end": end})
    return {"customer_id": customer_id, "applies": rounds, "updates": updates, "writes": writes, "end": end}


def _count(app: WorkerContext, applied: Applied) -> None:
    app.metrics.inc("shopsync_coalesced_applies_total")
    now = time.time()
    for update_id, outcome in applied.outcomes.items():
        app.metrics.inc("shopsync_coalesced_updates_total", {"outcome": outcome})
        received = applied.received_at.get(update_id)
        if outcome == "written" and update_id.startswith("wh:") and received is not None:
            app.metrics.observe("shopsync_webhook_to_write_seconds", now - received)
