"""`shopsync status` shows what Redis holds even when the installations file is of no help, and
says so on stderr: an unknown domain, a file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from core.keys import Keys
from tests.ops.helpers import DEMO, cli_env, run_cli


async def test_an_unknown_domain_is_named_with_the_known_ones(
    redis: aioredis.Redis, redis_url: str, keys: Keys
) -> None:
    done = await run_cli(["status", "nosuch.myshopify.com"], cli_env(redis_url, keys, DEMO))
    assert done.code == 0
    assert done.stderr.strip() == (
        f"shopsync status: nosuch.myshopify.com is not in {DEMO} (shops: demo-store.myshopify.com);"
        " what Redis holds for it:"
    )
    assert "Queues" in done.stdout


async def test_an_unreadable_installations_file_is_named(
    redis: aioredis.Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.toml"
    done = await run_cli(["status", "--json"], cli_env(redis_url, keys, missing))
    assert done.code == 0
    assert done.stderr.strip() == f"shopsync status: no per-shop lines: {missing}: (file): no such file"
    assert '"queues"' in done.stdout
