"""Starting a full sync and reading its progress: what the CLI, the admin API and `make run` use.

No worker clients here (the receiver must not import them): a full sync is a record in Redis and
a coordinator job on the full-sync queue, both written by one Lua script so that two callers
racing for the same shop get the same sync id (one full sync per shop at a time).

Redis, per sync (`Keys.full_sync_record(id)` = R):
- `R` hash: the record; every value is JSON (`core.status` decodes them). Counters
  (`seen`, `synced`, `unchanged`, `skipped`, `stale`, `deleted`, `failed`, `walked`, `batches`,
  `batches_done`) grow with HINCRBY; `cursor` / `lines` are the walk's checkpoint.
- `R:page:{n}` the customers of batch n (compact JSON list) until the batch is done;
  `R:outcomes:{n}` customer id -> outcome of batch n so far (a redone batch skips them);
  `R:pending` batch n -> its current job id (enqueued, not done); `R:done` batches done;
  `R:lease:walk`, `R:lease:{n}` held (and renewed) by the job working on them.
Per shop: `Keys.full_sync(shop)` the running sync's id; `{prefix}:fullsync-walked:{shop}` the
start time of the last completed walk (reconciliation walks from there). `{prefix}:fullsync-active`
the ids of running syncs (for the watchdog). `Keys.full_syncs` every sync id by start time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.keys import Keys
from core.redis_conn import hgetall, run_script

WALK_FUNCTION = "full_sync_walk"
BATCH_FUNCTION = "full_sync_batch"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
TERMINAL = frozenset({FINISHED, FAILED})
COUNTERS = ("seen", "synced", "unchanged", "skipped", "stale", "deleted", "failed")
DATA_TTL_S = 7 * 24 * 3600  # batch pages and outcomes of an abandoned sync go away by themselves

Kind = Literal["full", "reconcile"]


@dataclass(frozen=True, slots=True)
class SyncKeys:
    """The Redis keys of one full sync."""

    keys: Keys
    sync_id: str

    @property
    def record(self) -> str:
        return self.keys.full_sync_record(self.sync_id)

    def page(self, batch: int) -> str:
        return f"{self.record}:page:{batch}"

    def outcomes(self, batch: int) -> str:
        return f"{self.record}:outcomes:{batch}"

    @property
    def pending(self) -> str:
        return f"{self.record}:pending"

    @property
    def done(self) -> str:
        return f"{self.record}:done"

    def lease(self, name: str | int) -> str:
        return f"{self.record}:lease:{name}"


def active_set(keys: Keys) -> str:
    return f"{keys.prefix}:fullsync-active"


def walked_key(keys: Keys, shop: str) -> str:
    return f"{keys.prefix}:fullsync-walked:{shop}"


def walk_job_id(sync_id: str, gen: int) -> str:
    return f"fullsync:{sync_id}:walk:{gen}"


def batch_job_id(sync_id: str, batch: int, attempt: int = 0) -> str:
    base = f"fullsync:{sync_id}:batch:{batch}"
    return base if attempt == 0 else f"{base}:r{attempt}"


def new_sync_id() -> str:
    return f"fs-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"


# KEYS: active key, record prefix, full_syncs zset, active set, queue.
# ARGV: new id, started_at, job id, job bytes, job ttl ms, score, then field/value pairs.
# Returns {sync id, 1 if started now else 0}.
_START = """
local current = redis.call('GET', KEYS[1])
if current then
  local state = redis.call('HGET', KEYS[2] .. current, 'state')
  if state == '"running"' then return {current, 0} end
end
local id = ARGV[1]
redis.call('SET', KEYS[1], id)
local record = KEYS[2] .. id
for i = 7, #ARGV, 2 do redis.call('HSET', record, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[3], ARGV[2], id)
redis.call('SADD', KEYS[4], id)
redis.call('PSETEX', 'arq:job:' .. ARGV[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[3])
return {id, 1}
"""


@dataclass(frozen=True, slots=True)
class Started:
    sync_id: str
    started: bool  # False: a sync of this shop was already running; this is its id


async def start_full_sync(
    redis: aioredis.Redis,
    keys: Keys,
    shop: str,
    *,
    force: bool = False,
    with_orders: bool = False,
    bulk: bool = False,
    kind: Kind = "full",
    updated_at_min: str | None = None,
    sync_id: str | None = None,
) -> Started:
    """Start a full sync of `shop` (a known domain; callers check), or return the running one."""
    sync_id = sync_id or new_sync_id()
    started_at = time.time()
    job_id = walk_job_id(sync_id, 0)
    fields: dict[str, Any] = {
        "sync_id": sync_id,
        "shop": shop,
        "kind": kind,
        "state": RUNNING,
        "source": "bulk" if bulk else "rest",
        "force": force,
        "with_orders": with_orders,
        "updated_at_min": updated_at_min,
        "total": None,
        "walked": 0,
        **dict.fromkeys(COUNTERS, 0),
        "batches": 0,
        "batches_done": 0,
        "walk_done": False,
        "walk_gen": 0,
        "cursor": None,
        "lines": 0,
        "started_at": started_at,
        "finished_at": None,
    }
    args: list[Any] = [
        sync_id,
        started_at,
        job_id,
        job_bytes(WALK_FUNCTION, (sync_id, 0)),
        JOB_TTL_MS,
        now_ms(),
    ]
    for name, value in fields.items():
        args += [name, orjson.dumps(value)]
    result = await run_script(
        redis,
        _START,
        [
            keys.full_sync(shop),
            keys.full_sync_record(""),
            keys.full_syncs,
            active_set(keys),
            keys.fullsync_queue,
        ],
        args,
    )
    found, created = result
    return Started(_text(found), bool(int(created)))


async def read_sync(redis: aioredis.Redis, keys: Keys, sync_id: str) -> dict[str, Any] | None:
    """The sync's record with values decoded; None when there is no such sync."""
    raw = await hgetall(redis, keys.full_sync_record(sync_id))
    return decode_record(raw) if raw else None


async def running_sync(redis: aioredis.Redis, keys: Keys, shop: str) -> str | None:
    """The id of the shop's running full sync, if any."""
    current = await redis.get(keys.full_sync(shop))
    if current is None:
        return None
    record = await read_sync(redis, keys, _text(current))
    return _text(current) if record and record.get("state") == RUNNING else None


# KEYS: the sync's record, the active set, the shop's current-sync pointer. ARGV: sync id, state,
# error, finished at (JSON). Only a running sync ends (a worker may finish or fail it meanwhile),
# and the pointer goes only while it is still this sync's, in one step.
_END = """
if redis.call('HGET', KEYS[1], 'state') ~= '"running"' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'error', ARGV[3], 'finished_at', ARGV[4])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""


async def end_sync(redis: aioredis.Redis, keys: Keys, sync_id: str, shop: str, error: str) -> bool:
    """Mark the running sync failed with `error` and free its shop for the next one; False when it
    had already ended (finished or failed), which is then left as it was. Its jobs still queued
    or parked find it not running and end without work (`worker.fullsync`); what it wrote stays."""
    ended = await run_script(
        redis,
        _END,
        [keys.full_sync_record(sync_id), active_set(keys), keys.full_sync(shop)],
        [sync_id, orjson.dumps(FAILED), orjson.dumps(error), orjson.dumps(time.time())],
    )
    return bool(int(ended))


CANCELLED = "cancelled by an operator"
# Why a running sync waits (the walker's answer, `status` and `/admin`): its shop left the file.
PARKED = "shop not in the installations file"


async def cancel_sync(redis: aioredis.Redis, keys: Keys, shop: str) -> tuple[str | None, str]:
    """End the shop's running sync as an operator asks (`shopsync full-sync --cancel`, the admin
    API), installed or not: (its id, "") or (id or None, why nothing was ended)."""
    sync_id = await running_sync(redis, keys, shop)
    if sync_id is None:
        return None, f"no full sync of {shop} is running"
    if not await end_sync(redis, keys, sync_id, shop, CANCELLED):
        return sync_id, f"the full sync {sync_id} of {shop} ended on its own meanwhile"
    return sync_id, ""


def decode_record(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        text = _text(v)
        try:
            out[_text(k)] = orjson.loads(text)
        except orjson.JSONDecodeError:
            out[_text(k)] = text
    return out


@dataclass(frozen=True, slots=True)
class Progress:
    """What a progress bar shows, computed from a record."""

    state: str
    done: int
    total: int | None
    failed: int
    rate_per_s: float
    eta_s: float | None
    elapsed_s: float

    @classmethod
    def of(cls, record: Mapping[str, Any], now: float | None = None) -> Progress:
        now = time.time() if now is None else now
        started = float(record.get("started_at") or now)
        finished = record.get("finished_at")
        elapsed = max(1e-6, (float(finished) if finished else now) - started)
        done = int(record.get("seen") or 0)
        total_raw = record.get("total")
        # Until the walk is over a reconciliation's total is unknown: what was walked so far.
        total = int(total_raw) if total_raw is not None else None
        rate = done / elapsed
        eta = None
        if total is not None and rate > 0:
            eta = max(0.0, (total - done) / rate)
        return cls(
            state=str(record.get("state")),
            done=done,
            total=total,
            failed=int(record.get("failed") or 0),
            rate_per_s=rate,
            eta_s=eta,
            elapsed_s=elapsed,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
