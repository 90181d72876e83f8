"""`shopsync worker` and `shopsync receiver` as real processes: start, serve, stop cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from shopsync.devredis import free_port
from tests.receiver.helpers import body_of, headers, queued_jobs

ROOT = Path(__file__).resolve().parents[2]


def _env(redis_url: str, keys: Keys, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "SHOPSYNC_KEY_PREFIX": keys.prefix,
        "LOG_FORMAT": "json",
        **extra,
    }


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shopsync.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_worker_runs_both_queues_with_health_checks_and_stops_on_sigterm(
    redis_url: str, redis: aioredis.Redis, keys: Keys
) -> None:
    proc = await _spawn("worker", env=_env(redis_url, keys))
    try:
        async with asyncio.timeout(30):
            while True:  # polling Redis: there is nothing to wait on in-process
                if all([await redis.exists(q + ":health-check") for q in keys.queues]):
                    break
                await asyncio.sleep(0.1)
        health = (await redis.get(keys.realtime_queue + ":health-check")).decode()
        assert "j_complete=" in health
        assert 0 < await redis.ttl(keys.realtime_queue + ":health-check") <= 61
        assert await redis.zcard(keys.workers) == 1
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(40):
            code = await proc.wait()
        assert code == 0
        assert await redis.zcard(keys.workers) == 0  # it signed off
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_receiver_finishes_in_flight_requests_on_sigterm(
    redis_url: str, redis: aioredis.Redis, keys: Keys
) -> None:
    port = free_port()
    proc = await _spawn("receiver", env=_env(redis_url, keys, PORT=str(port)))
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)

            async def post(i: int) -> int:
                body = body_of({"id": i})
                async with http.post(
                    f"http://127.0.0.1:{port}/webhooks/shopify",
                    data=body,
                    headers=headers(body, webhook_id=f"g{i}"),
                ) as r:
                    return r.status

            tasks = [asyncio.create_task(post(i)) for i in range(50)]
            await asyncio.sleep(0)
            proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*tasks, return_exceptions=True)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
        answered = [r for r in results if r == 200]
        # Every request answered 200 is stored; none is acknowledged without its job.
        assert len(await queued_jobs(redis, keys)) == len(answered)
        assert all(r == 200 or isinstance(r, Exception) for r in results)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_processes_refuse_a_bad_installations_file(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    bad = tmp_path / "shops.toml"
    bad.write_text('[[shop]]\ndomain = "x.myshopify.com"\naccess_token = "${NOT_SET_HERE}"\n')
    for command in ("receiver", "worker"):
        proc = await _spawn(command, env=_env(redis_url, keys, SHOPS_FILE=str(bad), PORT=str(free_port())))
        _, err = await proc.communicate()
        assert proc.returncode == 1
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0] and "shop[0]" in lines[0], lines
