"""`shopsync full-sync`: `--cancel` ends a running sync for good (a parked one included); an
unknown shop and a `--wait` without workers are said in one line."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import redis.asyncio as aioredis

from core import fullsync_control as control
from core import status
from core.keys import Keys
from mappings.installation import Installations
from shopsync.cli import main as cli_main
from tests.fullsync.helpers import worker_app
from worker.fullsync.walker import walk_slice

GHOST = "ghost-store.myshopify.com"  # in no installations file


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: Keys) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SHOPSYNC_KEY_PREFIX", keys.prefix)
    monkeypatch.delenv("SHOPS_FILE", raising=False)


@pytest.mark.usefixtures("cli_env")
async def test_a_sync_of_a_shop_not_installed_is_parked_until_cancelled(
    redis: aioredis.Redis,
    keys: Keys,
    redis_url: str,
    demo_installations: Installations,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Python call does not check the domain (docs/OPERATIONS.md): the worker parks the sync.
    started = await control.start_full_sync(redis, keys, GHOST)
    async with worker_app(redis_url, keys, demo_installations) as app:
        assert await walk_slice(app, started.sync_id, 0) == {"parked": "shop not in the installations file"}
        assert await control.running_sync(redis, keys, GHOST) == started.sync_id
        report = await status.collect(redis, keys, shops=demo_installations.shops)
        (shown,) = [s for s in report["full_syncs"] if s["sync_id"] == started.sync_id]
        assert shown["parked"] == "shop not in the installations file"  # status and /admin say so

        assert await asyncio_cli(["full-sync", GHOST.upper(), "--cancel"]) == 0  # domains: any case
        assert capsys.readouterr().out.strip() == f"cancelled {started.sync_id}"
        record = await control.read_sync(redis, keys, started.sync_id)
        assert record is not None
        assert (record["state"], record["error"]) == (control.FAILED, "cancelled by an operator")
        assert await control.running_sync(redis, keys, GHOST) is None
        assert not await redis.sismember(control.active_set(keys), started.sync_id)  # type: ignore[misc]
        # Its job, should it come up again, ends without work.
        assert await walk_slice(app, started.sync_id, 0) == {"skipped": "not running"}

        monkeypatch.setenv("SHOPS_FILE", "/nonexistent.toml")  # --cancel does not read it
        assert await asyncio_cli(["full-sync", GHOST, "--cancel"]) == 1
        assert capsys.readouterr().err.strip() == f"shopsync: no full sync of {GHOST} is running"


@pytest.mark.usefixtures("cli_env")
async def test_an_unknown_shop_names_the_known_ones(
    redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio_cli(["full-sync", GHOST]) == 1
    err = capsys.readouterr().err
    assert f"no shop {GHOST!r}" in err and "(shops: demo-store.myshopify.com)" in err


async def asyncio_cli(argv: list[str]) -> int:
    """The command runs its own event loop: off this test's loop, in a thread."""
    return await asyncio.to_thread(cli_main, argv)


async def test_wait_says_when_no_worker_runs(redis: aioredis.Redis, redis_url: str, keys: Keys) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "SHOPSYNC_KEY_PREFIX": keys.prefix, "PYTHONUNBUFFERED": "1"}
    env.pop("SHOPS_FILE", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shopsync.cli",
        "full-sync",
        "demo-store.myshopify.com",
        "--wait",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line.decode().strip() == "no worker is running: the sync waits in the queue until one starts"
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_sync_that_ended_meanwhile_is_left_as_it_ended(redis: aioredis.Redis, keys: Keys) -> None:
    started = await control.start_full_sync(redis, keys, GHOST)
    await redis.hset(control.SyncKeys(keys, started.sync_id).record, "state", '"finished"')  # type: ignore[misc]
    assert not await control.end_sync(redis, keys, started.sync_id, GHOST, "cancelled by an operator")
    record = await control.read_sync(redis, keys, started.sync_id)
    assert record is not None and record["state"] == control.FINISHED and not record.get("error")
    # A newer sync of the shop keeps its pointer when an older one ends.
    await redis.set(keys.full_sync(GHOST), "newer")
    other = await control.start_full_sync(redis, keys, "other.myshopify.com")
    await redis.set(keys.full_sync("other.myshopify.com"), "newer")
    assert await control.end_sync(redis, keys, other.sync_id, "other.myshopify.com", "x")
    assert await redis.get(keys.full_sync("other.myshopify.com")) == b"newer"


@pytest.mark.usefixtures("cli_env")
async def test_cancel_takes_no_other_option(
    redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio_cli(["full-sync", GHOST, "--cancel", "--wait"]) == 2
    assert capsys.readouterr().err.strip() == "shopsync: --cancel takes no --wait"
