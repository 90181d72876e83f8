"""A job whose own bookkeeping fails on Redis (counting its failure, burying it) is retried by
arq, never failed for good: arq drops a job that raises anything but `Retry`, and the delivery
behind it would be lost (the redis-restart scenario found an `orders/paid` lost this way)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from core.keys import Keys
from core.settings import Settings
from mappings.installation import Installations
from mappings.snapshot import PayloadError
from worker.context import WorkerContext
from worker.runtime import run_job

SHOP = "demo-store.myshopify.com"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def app_without_redis(keys: Keys, demo_installations: Installations) -> AsyncIterator[WorkerContext]:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    pool = ArqRedis(connection_pool=ConnectionPool.from_url(url, socket_connect_timeout=0.5))
    settings = Settings(redis_url=url, key_prefix=keys.prefix)
    yield WorkerContext(settings=settings, installations=demo_installations, redis=pool, keys=keys)
    await pool.aclose()


def _ctx(app: WorkerContext, job_try: int = 1) -> dict[str, Any]:
    return {"app": app, "job_id": "job-1", "job_try": job_try}


async def _redis_gone(app: WorkerContext) -> None:
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")


async def _poison(app: WorkerContext) -> None:
    raise PayloadError("id", "not an integer")


@pytest.mark.parametrize(
    ("body", "job_try"),
    [
        (_redis_gone, 1),  # transient: would be a Retry anyway, but counting it fails
        (_redis_gone, 8),  # tries used up: burying it fails
        (_poison, 1),  # permanent: burying it fails
    ],
    ids=["transient", "last-try", "permanent"],
)
async def test_a_job_whose_bookkeeping_fails_on_redis_is_retried(
    app_without_redis: WorkerContext, body: Any, job_try: int
) -> None:
    app = app_without_redis
    with pytest.raises(Retry) as raised:
        await run_job(
            _ctx(app, job_try), "record_order", body, (), queue=app.keys.realtime_queue, timeout_s=5,
            bind={"shop": SHOP},
        )  # fmt: skip
    assert raised.value.defer_score is not None and raised.value.defer_score > 0
    assert isinstance(raised.value.__cause__, RedisConnectionError)


async def test_a_job_that_needs_no_bookkeeping_runs_without_redis(app_without_redis: WorkerContext) -> None:
    async def fine(app: WorkerContext) -> str:
        return "done"

    app = app_without_redis
    result = await run_job(_ctx(app), "record_order", fine, (), queue=app.keys.realtime_queue, timeout_s=5)
    assert result == "done"
