"""Fixtures of the client tests: a real Redis under a unique key prefix, removed afterwards."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch
from uuid import uuid4

import aioresponses.core as aioresponses_core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from redis.asyncio import Redis
from yarl import URL

from core.keys import Keys
from mappings.installation import ApsisAccount, Limits, Shop
from worker.ratelimit import RateLimiter

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"test-{uuid4().hex}")


@pytest.fixture
async def redis(keys: Keys) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield client
    await delete_prefix(client, keys.prefix)
    await client.aclose()


async def delete_prefix(client: Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@pytest.fixture
def limiter(redis: Redis, keys: Keys) -> RateLimiter:
    return RateLimiter(redis, keys)


def make_account(base_url: str = "http://apsis.test", client_id: str = "client-1") -> ApsisAccount:
    return ApsisAccount(
        base_url=base_url,
        client_id=client_id,
        client_secret="s3cret",
        keyspace="com.apsis1.integrations.keyspaces.test.shopify",
    )


def make_shop(admin_url: str = "http://shop.test", limits: Limits | None = None) -> Shop:
    return Shop(
        domain="test-store.myshopify.com",
        admin_url=admin_url,
        api_version="2024-10",
        access_token="shpat_test",
        webhook_secret="whsec",
        apsis=make_account(),
        sections=(),
        limits=limits or Limits(),
    )


# --- aioresponses on aiohttp 3.14 -------------------------------------------------------------
# aioresponses 0.7.9 builds ClientResponse without the `stream_writer` argument aiohttp 3.14
# requires; give its responses a stand-in so the mocks work (only inside these tests).


class _CompatResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def http() -> Iterator[aioresponses]:
    with patch.object(aioresponses_core, "ClientResponse", _CompatResponse), aioresponses() as mocked:
        yield mocked


def calls(mocked: aioresponses, method: str, url_prefix: str = "") -> list[tuple[URL, dict[str, Any]]]:
    """(url, kwargs) of every request made with `method` whose URL starts with `url_prefix`."""
    out: list[tuple[URL, dict[str, Any]]] = []
    for (m, url), requests in mocked.requests.items():
        if m == method and str(url).startswith(url_prefix):
            out.extend((url, dict(call.kwargs)) for call in requests)
    return out
