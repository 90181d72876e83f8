"""`shopsync status` shows each rate limiter as an operator reads it: how full, its pace, the wait
at its last acquire and when that was (not the raw JSON snapshot)."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.keys import Keys
from tests.ops.helpers import DEMO, cli_env, run_cli
from worker.ratelimit import Bucket, RateLimiter


async def test_status_lists_each_limiter_with_level_pace_and_wait(
    redis: aioredis.Redis, keys: Keys, redis_url: str
) -> None:
    limiter = RateLimiter(redis, keys)
    fast = Bucket("apsis:client-status", rate_per_s=95, burst=1, kind="apsis")
    slow = Bucket("apsis-token:client-status", rate_per_s=10 / 60, burst=2, kind="apsis-token")
    await limiter.acquire_bucket(fast)
    await limiter.acquire_bucket(slow)
    env = {**cli_env(redis_url, keys, DEMO), "COLUMNS": "160"}  # rich: a wide terminal
    done = await run_cli(["status"], env)
    assert done.code == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "client-status" in line}
    cells = [c.strip() for c in rows["apsis:client-status"].split("│")[2:6]]
    assert cells[0] == "1.0 / 1" and cells[1] == "95/s" and cells[2] == "0.00s"
    assert cells[3].endswith("s ago")
    assert [c.strip() for c in rows["apsis-token:client-status"].split("│")[3:4]] == ["10/min"]
    assert '"interval_us"' not in done.stdout
