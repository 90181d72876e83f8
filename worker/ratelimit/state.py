"""What `shopsync status` and `/admin/status` show of the limiter: each listed bucket's live
level and wait (`BucketState`), computed from the registry hash the acquire script writes
(`state_key`) and the buckets' TATs, read against Redis's clock in one round trip."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from core.keys import Keys
from worker.ratelimit.buckets import MICROS


@dataclass(frozen=True, slots=True)
class BucketState:
    name: str
    rate_per_s: float
    burst: float
    level: float  # requests counted against the bucket right now (0 = idle, burst = full)
    wait_s: float  # how long a request arriving now would wait


def state_key(keys: Keys) -> str:
    """Hash of listed bucket name -> JSON (config and a snapshot of the level at the last acquire).
    Bucket names are "api:..." so "state" cannot collide with a bucket."""
    return keys.limiter("state")


async def limiter_state(redis: Redis, keys: Keys) -> list[BucketState]:
    """Live level per listed bucket, read in one round trip (plus one per 500 buckets)."""
    registry = await cast("Awaitable[dict[Any, Any]]", redis.hgetall(state_key(keys)))
    entries: list[tuple[str, int, float]] = []
    for name, raw in registry.items():
        try:
            spec = orjson.loads(raw)
            entries.append((_text(name), int(spec["interval_us"]), float(spec["burst"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not ours (or an older format): skip rather than fail the status page
    entries.sort()
    out: list[BucketState] = []
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.mget([keys.limiter(name) for name, _, _ in chunk])
            (seconds, micros), tats = await pipe.execute()
        now = int(seconds) * MICROS + int(micros)
        for (name, interval, burst), tat_raw in zip(chunk, tats, strict=True):
            tat = int(tat_raw) if tat_raw is not None else now
            level = max(0, tat - now) / interval
            wait = max(0, tat + interval - burst * interval - now) / MICROS
            out.append(BucketState(name, round(MICROS / interval, 6), burst, round(level, 3), round(wait, 6)))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
