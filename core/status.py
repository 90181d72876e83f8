"""What `shopsync status` and `GET /admin/status` show, gathered from Redis without `KEYS`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from core.redis_conn import hgetall, typed
from core.shop_status import shop_reports

_IN_PROGRESS_PREFIX = "arq:in-progress:"
_SCAN_HEAD = 1000  # in-progress jobs are among the oldest queue members; look at this many


async def queue_report(redis: aioredis.Redis, queue: str, now_ms: int) -> dict[str, Any]:
    total = int(await redis.zcard(queue))
    deferred = int(await redis.zcount(queue, f"({now_ms}", "+inf"))
    head = await redis.zrange(queue, 0, _SCAN_HEAD - 1, withscores=True)
    in_progress = 0
    if head:
        pipe = redis.pipeline(transaction=False)
        for job_id, _ in head:
            pipe.exists(_IN_PROGRESS_PREFIX + _text(job_id))
        in_progress = sum(int(x) for x in await pipe.execute())
    oldest_age_s = max(0.0, (now_ms - head[0][1]) / 1000) if head and head[0][1] <= now_ms else 0.0
    health = await redis.get(queue + ":health-check")
    return {
        "name": queue,
        "queued": max(0, total - deferred - in_progress),
        "deferred": deferred,
        "in_progress": in_progress,
        "oldest_age_s": round(oldest_age_s, 3),
        "health_check": _text(health) if health else None,
    }


async def suppressed_counts(redis: aioredis.Redis, keys: Keys, shops: Iterable[str]) -> dict[str, int]:
    """Per shop: profiles whose address APSIS reported suppressed at their last consent read
    (Consent 2.0: suppression overrides every consent; reported, never "fixed")."""
    return {shop: int(await typed(redis.hlen(keys.suppressed(shop)))) for shop in shops}


async def needs_approval(redis: aioredis.Redis, keys: Keys, shop: str | None = None) -> dict[str, str]:
    """Shops whose Shopify token cannot be had until the merchant approves the app again (a
    refused refresh or client credentials grant, an uninstalled app), with the reason; their jobs
    are held, not lost (core/shopify_auth)."""
    marked = {_text(k): _text(v) for k, v in (await hgetall(redis, keys.needs_approval)).items()}
    return {s: r for s, r in sorted(marked.items()) if shop is None or s == shop}


async def audits(redis: aioredis.Redis, keys: Keys, shops: Iterable[str]) -> dict[str, Any]:
    """Per shop: the last drift audit's counts and time (`shopsync audit`, worker/audit.py)."""
    found: dict[str, Any] = {}
    for shop in shops:
        raw = await redis.get(keys.audit(shop))
        if raw is not None:
            found[shop] = orjson.loads(raw)
    return found


WORKER_ALIVE_S = 90  # three missed heartbeats


async def workers_alive(redis: aioredis.Redis, keys: Keys, now: float | None = None) -> list[str]:
    """Worker processes with a heartbeat in the last `WORKER_ALIVE_S`."""
    now = time.time() if now is None else now
    return [_text(w) for w in await redis.zrangebyscore(keys.workers, now - WORKER_ALIVE_S, "+inf")]


async def collect(
    redis: aioredis.Redis,
    keys: Keys,
    shop: str | None = None,
    shops: Iterable[str] = (),
    accounts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    shops = list(shops)
    now = time.time()
    now_ms = int(now * 1000)
    queues = [await queue_report(redis, q, now_ms) for q in keys.queues]
    workers = await workers_alive(redis, keys, now)
    failures_1h = int(await redis.zcount(keys.failures, now - 3600, "+inf"))
    dead_total = int(await redis.zcard(keys.dead_letter_index))
    dead_1h = int(await redis.zcount(keys.dead_letter_index, now - 3600, "+inf"))
    recent_failures = [
        orjson.loads(raw)
        for raw in await redis.zrevrangebyscore(keys.failures, "+inf", now - 3600, start=0, num=20)
    ]
    full_syncs = []
    for sync_id in await redis.zrevrange(keys.full_syncs, 0, 19):
        record = await hgetall(redis, keys.full_sync_record(_text(sync_id)))
        if record:
            entry = {_text(k): _value(v) for k, v in record.items()}
            if shop is None or entry.get("shop") == shop:
                if entry.get("path") == "import":
                    entry["import_phase"] = import_phase(entry)
                if shops and entry.get("state") == "running" and entry.get("shop") not in shops:
                    # The workers keep it for when the shop is back (`full-sync --cancel` ends it).
                    entry["parked"] = control.PARKED
                full_syncs.append(entry)
    counters = {_text(k): int(v) for k, v in (await hgetall(redis, keys.counters)).items()}
    limiter = await _limiter_state(redis, keys)
    return {
        "time": now,
        "queues": queues,
        "workers_alive": workers,
        "failures_last_hour": failures_1h,
        "recent_failures": recent_failures,
        "dead_letters": {"total": dead_total, "last_hour": dead_1h},
        "full_syncs": full_syncs,
        "counters": counters,
        "limiters": limiter,
        "suppressed_profiles": await suppressed_counts(redis, keys, [shop] if shop else shops),
        "needs_approval": await needs_approval(redis, keys, shop),
        "audits": await audits(redis, keys, [shop] if shop else shops),
        # Per shop: backlog, rate-limit use, backoff, last error (core/shop_status.py).
        "shops": {
            name: report
            for name, report in (await shop_reports(redis, keys, shops, accounts)).items()
            if shop is None or name == shop
        },
    }


def import_phase(record: dict[str, Any]) -> dict[str, Any]:
    """A full sync through APSIS profile imports (worker/fullsync/imports.py): its files built,
    uploaded, processing in APSIS, verified (or failed for good), and its rows imported, sent
    per profile instead, re-sent after verification, refused before upload."""
    files = record.get("import_files") or {}
    return {
        "files_built": int(files.get("built", 0)),
        "files_uploaded": int(files.get("uploaded", 0)),
        "files_processing": int(files.get("processing", 0)),
        "files_completed": int(files.get("completed", 0)),
        "files_failed": int(files.get("failed", 0)),
        "verified": bool(record.get("import_verified")),
        "rows": int(record.get("import_rows") or 0),
        "rows_per_profile": int(record.get("import_rows_per_profile") or 0),
        "rows_resent": int(record.get("import_rows_resent") or 0),
        "rows_refused": int(record.get("import_rows_refused") or 0),
    }


async def _limiter_state(redis: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """Limiter buckets publish their state in one hash (see worker.ratelimit), read here."""
    raw = await hgetall(redis, keys.limiter("state"))
    return {_text(k): _value(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _value(raw: bytes | str) -> Any:
    text = _text(raw)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
