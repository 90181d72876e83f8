"""The pieces of full sync that need no sandbox: fields asked for, progress, the watchdog."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from mappings.installation import Installations
from shopsync.cli import main as cli_main
from tests.fullsync.helpers import worker_app
from worker.fullsync import import_driver, records
from worker.fullsync.source import compact, customer_fields
from worker.fullsync.watchdog import supervise

DOMAIN = "demo-store.myshopify.com"


def test_customer_fields_are_the_roots_of_what_the_installation_reads(
    demo_installations: Installations,
) -> None:
    shop = demo_installations.get(DOMAIN)
    assert shop is not None
    fields = customer_fields(shop)
    for needed in ("id", "updated_at", "email", "phone", "tags", "default_address", "orders_count"):
        assert needed in fields
    assert "email_marketing_consent" in fields and "accepts_marketing" in fields
    assert "addresses" not in fields and "note" not in fields
    assert compact({"id": 1, "note": "x", "default_address": {"city": "Oslo"}}, fields) == {
        "id": 1,
        "default_address": {"city": "Oslo"},
    }


def test_progress_rate_and_time_left() -> None:
    now = 1000.0
    p = control.Progress.of(
        {"state": "running", "seen": 300, "total": 1000, "failed": 2, "started_at": 900.0}, now
    )
    assert (p.done, p.total, p.failed) == (300, 1000, 2)
    assert p.rate_per_s == 3.0 and p.eta_s == 700 / 3.0
    unknown = control.Progress.of({"state": "running", "seen": 0, "total": None, "started_at": now}, now)
    assert unknown.total is None and unknown.eta_s is None


async def test_watchdog_reenqueues_a_lost_batch_and_a_lost_walk(
    redis: aioredis.Redis, keys: Keys, redis_url: str, demo_installations: Installations
) -> None:
    started = await control.start_full_sync(redis, keys, DOMAIN)
    sk = control.SyncKeys(keys, started.sync_id)
    walk0 = control.walk_job_id(started.sync_id, 0)
    # The walk's job vanished (say, failed by an arq timeout); batch 3 is pending, its job gone too.
    await redis.zrem(keys.fullsync_queue, walk0)
    await redis.hset(sk.pending, "3", control.batch_job_id(started.sync_id, 3))  # type: ignore[misc]
    # Batch 4 is pending and its job waits in the queue: alive.
    await redis.hset(sk.pending, "4", "waiting-job")  # type: ignore[misc]
    await redis.zadd(keys.fullsync_queue, {"waiting-job": time.time() * 1000})
    async with worker_app(redis_url, keys, demo_installations) as app:  # jobs: the `redis` fixture
        assert await supervise(app, started.sync_id, grace_s=0.01) == 2
        record = await control.read_sync(redis, keys, started.sync_id)
        assert record is not None and record["walk_gen"] == 1 and record["revived"] == 2
        assert await redis.zscore(keys.fullsync_queue, control.walk_job_id(started.sync_id, 1)) is not None
        new_job = (await redis.hget(sk.pending, "3")).decode()  # type: ignore[misc]
        assert new_job.startswith(control.batch_job_id(started.sync_id, 3) + ":r")
        assert orjson.loads(await redis.get(f"arq:job:{new_job}"))["a"] == [started.sync_id, 3]
        assert (await redis.hget(sk.pending, "4")) == b"waiting-job"  # type: ignore[misc]
        # Nothing more to do on a second pass.
        assert await supervise(app, started.sync_id, grace_s=0.01) == 0


def test_cli_refuses_an_unknown_shop(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["full-sync", "nope.myshopify.com"]) == 1
    assert "no shop 'nope.myshopify.com'" in capsys.readouterr().err


async def test_history_keeps_the_newest_records(
    redis: aioredis.Redis,
    keys: Keys,
    redis_url: str,
    demo_installations: Installations,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(records, "HISTORY", 2)
    for n in range(4):
        await redis.zadd(keys.full_syncs, {f"old-{n}": n})
        await redis.hset(keys.full_sync_record(f"old-{n}"), "state", '"finished"')  # type: ignore[misc]
    async with worker_app(redis_url, keys, demo_installations) as app:
        await records._trim_history(app)
    assert await redis.zrange(keys.full_syncs, 0, -1) == [b"old-2", b"old-3"]
    assert not await redis.exists(keys.full_sync_record("old-0"))


async def test_an_import_request_and_its_save_finish_even_when_the_walk_is_stopped_between() -> None:
    # A stop (SIGTERM to the walk process) while APSIS creates the import: the id is still saved,
    # so the file is not requested again (seen once: 5 imports requested for 4 files).
    steps: list[str] = []

    async def request() -> str:
        await asyncio.sleep(0.2)  # the API call in flight
        steps.append("requested")
        await asyncio.sleep(0.05)
        steps.append("saved")
        return "ticket"

    walk = asyncio.create_task(import_driver._through_cancel(request()))
    await asyncio.sleep(0.05)
    walk.cancel()
    with pytest.raises(asyncio.CancelledError):
        await walk
    assert steps == ["requested", "saved"]
    assert await import_driver._through_cancel(request()) == "ticket"  # uncancelled: its result
