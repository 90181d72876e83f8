"""Shared fixtures: a real Redis (REDIS_URL, or an embedded one), isolated by a key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from mappings.installation import Installations
from shopsync.devredis import embedded_redis, redis_answers
from shopsync.shops import load_installations

DEMO_TOML = Path(__file__).resolve().parent.parent / "mappings" / "demo.toml"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url and redis_answers(url):
        yield url
        return
    with embedded_redis() as embedded:
        os.environ["REDIS_URL"] = embedded
        yield embedded


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await purge(client, keys)
    await client.aclose()


async def purge(client: aioredis.Redis, keys: Keys) -> None:
    """Remove everything a test wrote: its prefixed keys and the arq jobs of its queues."""
    for queue in keys.queues:
        job_ids = await client.zrange(queue, 0, -1)
        for job_id in job_ids:
            jid = job_id.decode()
            await client.delete(
                f"arq:job:{jid}", f"arq:in-progress:{jid}", f"arq:retry:{jid}", f"arq:result:{jid}"
            )
    async for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
        await client.delete(key)


@pytest.fixture(scope="session")
def demo_installations() -> Installations:
    return load_installations(str(DEMO_TOML), env={})


@pytest.fixture(scope="session", autouse=True)
def _plain_logs() -> None:
    """Readable one-line logs in test output (no rich tracebacks of whole worker contexts)."""
    from core.logging import configure_logging

    configure_logging("json", os.environ.get("LOG_LEVEL", "warning"))
