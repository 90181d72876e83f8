"""Full-sync batches of many shops share the pool's batch slots by weight, not first come first served.

A walk does not put its batch jobs on the full-sync queue: it writes each job (arq's job key, as
`enqueue_job` would) and appends its id to the shop's ready list (`Keys.fair_ready(shop)`, the
shop in `Keys.fair_shops`), in the same transaction as the batch's page and the walk's
checkpoint. `dispatch` (one Lua call, run by every worker process every `DISPATCH_S`) then moves
ready jobs onto the arq queue while fewer than `LOOKAHEAD` dispatched batch jobs wait there
unstarted; it picks the shop by smooth weighted round-robin over the shops with ready work
(nginx's: each pick adds every candidate's weight to its credit, takes the highest credit and
subtracts the total from it), so with weights 2:1 the order is A A B A A B ..., and a shop that
starts its sync late is served at its next turn instead of after every batch queued before it.

Weights come from the installations file (`[shop.sync] weight`, default 1); every worker process
writes them to `Keys.fair_weights` at start, at every reload and every `WEIGHTS_REFRESH_S`. A shop
missing from that hash (removed from the file) or in backoff (worker/shop_backoff.py) is skipped:
its ready list stays as it is, parked, until it is back.

Real-time work goes first, CPU included. Job slots and API permits are the real-time lane's own,
but the two kinds of job share each worker process's CPU: with more webhooks than the pool can
take, every batch running beside them made the real-time backlog grow faster (measured: 20 shops
at 20 webhooks/s, `make bench BENCH_ARGS=fairness`). So while webhook jobs start late
(`Keys.realtime_behind`, set by worker/realtime_lag.py), the dispatcher lets one batch at a time
be on the queue, running or waiting, across the pool, and dispatches at most one every
`BEHIND_EVERY_S`: the full syncs slow down, none stops. (Only the count in flight was not enough:
one batch of an APSIS-bound sync runs its customers concurrently and kept the sync at full
speed.)

Crash safety: a job is in exactly one place at any moment, the ready list or the arq queue, and
moving it is one atomic script; its job key exists from the walk's transaction on. A worker killed
at any point loses nothing: what is in a ready list waits there, what is on the queue is arq's
(pessimistic execution), and the full-sync watchdog counts a job in a ready list as alive.
Dispatched ids are kept in `Keys.fair_inflight`, pruned by the script itself once arq has dropped
them from the queue (finished, failed), so a killed worker cannot leak a slot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from core import fullsync_control as control
from core.jobs import JOB_TTL_MS, job_bytes
from core.keys import Keys
from core.redis_conn import run_script, typed
from core.settings import env_float, env_int

# Dispatched batch jobs allowed to wait unstarted on the queue: enough that no worker finds the
# queue empty between two dispatches, few enough that the order is decided here, not by arq.
LOOKAHEAD = env_int("SHOPSYNC_FAIR_LOOKAHEAD", 4, minimum=1)
DISPATCH_S = 0.1
WEIGHTS_REFRESH_S = 30.0
MAX_PER_CALL = 64
# While real-time jobs start late: one batch in flight, one dispatched every this many seconds.
BEHIND_EVERY_S = env_float("SHOPSYNC_FAIR_BEHIND_EVERY_S", 5.0)

# KEYS: fair shops, weights, credit, in-flight, full-sync queue, real-time behind, the time of
# the next dispatch while behind. ARGV: lookahead, now ms, ready-list prefix, backoff prefix, now
# s, max per call, BEHIND_EVERY_S (ms). Returns the shops picked, in order (one per job dispatched).
_DISPATCH = """
local lookahead, now_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local waiting, inflight = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local score = redis.call('ZSCORE', KEYS[5], id)
  if not score then
    redis.call('SREM', KEYS[4], id)
  else
    inflight = inflight + 1
    if tonumber(score) <= now_ms and redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
      waiting = waiting + 1
    end
  end
end
local behind = redis.call('EXISTS', KEYS[6]) == 1
if behind then
  if inflight > 0 or now_ms < tonumber(redis.call('GET', KEYS[7]) or '0') then return {} end
  lookahead = waiting + 1
end
if waiting >= lookahead then return {} end
local candidates, weights, credit, total = {}, {}, {}, 0
for _, shop in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('LLEN', ARGV[3] .. shop) == 0 then
    redis.call('SREM', KEYS[1], shop)
    redis.call('HDEL', KEYS[3], shop)
  else
    local w = tonumber(redis.call('HGET', KEYS[2], shop) or '0')
    local held = tonumber(redis.call('HGET', ARGV[4] .. shop, 'until') or '0')
    if w > 0 and held <= tonumber(ARGV[5]) then
      candidates[#candidates + 1] = shop
      weights[shop] = w
      credit[shop] = tonumber(redis.call('HGET', KEYS[3], shop) or '0')
      total = total + w
    end
  end
end
table.sort(candidates)
local picked = {}
while waiting < lookahead and #candidates > 0 and #picked < tonumber(ARGV[6]) do
  local best = nil
  for _, shop in ipairs(candidates) do
    credit[shop] = credit[shop] + weights[shop]
    if best == nil or credit[shop] > credit[best] then best = shop end
  end
  credit[best] = credit[best] - total
  local id = redis.call('LPOP', ARGV[3] .. best)
  if id then
    redis.call('ZADD', KEYS[5], now_ms, id)
    redis.call('SADD', KEYS[4], id)
    picked[#picked + 1] = best
    waiting = waiting + 1
  end
  if redis.call('LLEN', ARGV[3] .. best) == 0 then
    local rest = {}
    for _, shop in ipairs(candidates) do
      if shop ~= best then rest[#rest + 1] = shop end
    end
    candidates = rest
    total = total - weights[best]
    credit[best] = 0
  end
end
for shop, c in pairs(credit) do redis.call('HSET', KEYS[3], shop, tostring(c)) end
if behind and #picked > 0 then
  redis.call('SET', KEYS[7], now_ms + tonumber(ARGV[7]), 'PX', math.max(1, tonumber(ARGV[7])))
end
return picked
"""


def push_ready(pipe: Any, keys: Keys, shop: str, job_id: str) -> None:
    """Append a batch job (its job key written by the caller) to the shop's ready list, inside
    the caller's transaction."""
    pipe.rpush(keys.fair_ready(shop), job_id)
    pipe.sadd(keys.fair_shops, shop)


async def dispatch(
    redis: aioredis.Redis, keys: Keys, *, lookahead: int | None = None, limit: int = MAX_PER_CALL
) -> list[str]:
    """Move ready batch jobs onto the full-sync queue, fairly; the shops picked, in order."""
    now = time.time()
    picked = await run_script(
        redis,
        _DISPATCH,
        [
            keys.fair_shops,
            keys.fair_weights,
            keys.fair_credit,
            keys.fair_inflight,
            keys.fullsync_queue,
            keys.realtime_behind,
            keys.realtime_behind_next,
        ],
        [
            LOOKAHEAD if lookahead is None else lookahead,
            int(now * 1000),
            keys.fair_ready(""),
            keys.shop_backoff(""),
            f"{now:.3f}",
            limit,
            int(BEHIND_EVERY_S * 1000),
        ],
    )
    return [p.decode() if isinstance(p, bytes) else str(p) for p in picked]


async def set_weights(redis: aioredis.Redis, keys: Keys, weights: Mapping[str, int]) -> list[str]:
    """Make `weights` the dispatcher's shops (those of the installations file); returns the shops
    dropped (no longer in the file: their ready batches stay parked)."""
    current = {k.decode() for k in await typed(redis.hkeys(keys.fair_weights))}
    dropped = sorted(current - set(weights))
    async with redis.pipeline(transaction=True) as pipe:
        if dropped:
            pipe.hdel(keys.fair_weights, *dropped)
        if weights:
            pipe.hset(keys.fair_weights, mapping={k: str(v) for k, v in weights.items()})
        await pipe.execute()
    return dropped


async def park_batch(redis: aioredis.Redis, keys: Keys, sync_id: str, batch: int, shop: str) -> str:
    """Give a batch that cannot run now (its shop removed from the file, or backing off) a new
    job at the front of the shop's ready list: parked, dispatched at the shop's next turn once
    it can run. Returns the new job id."""
    new_id = f"{control.batch_job_id(sync_id, batch)}:p{os.urandom(3).hex()}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(control.SyncKeys(keys, sync_id).pending, str(batch), new_id)
        pipe.psetex(f"arq:job:{new_id}", JOB_TTL_MS, job_bytes(control.BATCH_FUNCTION, (sync_id, batch)))
        pipe.lpush(keys.fair_ready(shop), new_id)
        pipe.sadd(keys.fair_shops, shop)
        await pipe.execute()
    return new_id


async def is_ready(redis: aioredis.Redis, keys: Keys, shop: str, job_id: str) -> bool:
    """True while `job_id` waits in the shop's ready list (not lost: not yet dispatched)."""
    return await typed(redis.lpos(keys.fair_ready(shop), job_id)) is not None
