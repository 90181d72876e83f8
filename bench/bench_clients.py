"""The API clients' shared limits: limiter cost per acquire, and the four-process pool figures.

- `limiter_*`: one `RateLimiter.acquire` (one Lua script, one round trip) on an uncontended
  bucket, sequentially and 64 at a time, against `REDIS_URL`.
- `pool_*`: four worker processes hammering the sandbox APSIS (100 requests/s) and Shopify (its
  GraphQL cost bucket: points restored per second) through the real clients
  (tests/clients/test_pool_limits.py): achieved rate, APSIS 429 share, Shopify THROTTLED answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from uuid import uuid4

from redis.asyncio import Redis

from core.keys import Keys
from tests.clients.conftest import delete_prefix
from tests.clients.test_pool_limits import run_pool
from worker.ratelimit import Bucket, RateLimiter


async def _limiter(n: int) -> dict[str, Any]:
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    keys = Keys(prefix=f"bench-{uuid4().hex}")
    limiter = RateLimiter(redis, keys)
    bucket = Bucket("bench:open", rate_per_s=1e6, burst=1e6)
    try:
        latencies = []
        for _ in range(n):
            started = time.perf_counter()
            await limiter.acquire_bucket(bucket)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        started = time.perf_counter()
        for _ in range(n // 64):
            await asyncio.gather(*(limiter.acquire_bucket(bucket) for _ in range(64)))
        concurrent = (n // 64) * 64 / (time.perf_counter() - started)
    finally:
        await delete_prefix(redis, keys.prefix)
        await redis.aclose()
    return {
        "limiter_acquire_p50_ms": round(1000 * latencies[len(latencies) // 2], 3),
        "limiter_acquire_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 3),
        "limiter_sequential_per_s": round(n / sum(latencies)),
        "limiter_concurrent_per_s": round(concurrent),
    }


def run(quick: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"name": "clients"}
    result |= asyncio.run(_limiter(2000 if quick else 20000))
    pool = asyncio.run(run_pool(5.0 if quick else 20.0))
    result |= {f"pool_{k}": v for k, v in pool.items()}
    return result
