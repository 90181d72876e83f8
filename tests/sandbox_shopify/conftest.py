"""Fixtures for the Shopify simulator tests: a running sandbox, a client session, a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.shopify import DeliveryConfig, ShopifySandbox, Store

TOKEN = "shpat_sandbox_token"
HEADERS = {"X-Shopify-Access-Token": TOKEN}
VERSION = "2024-10"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as client:
        yield client


@pytest.fixture
async def sandbox() -> AsyncIterator[ShopifySandbox]:
    store = Store(seed=7, size=120, delivery=DeliveryConfig(time_scale=1e-4, seed=1))
    store.rate_limit.bucket_size = 100_000  # these tests are about behaviour, not throttling
    async with ShopifySandbox(store) as running:
        yield running


async def walk(
    session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None, key: str = "customers"
) -> tuple[list[dict[str, Any]], int]:
    """Follow `rel="next"` links from the first page; returns (records, number of pages)."""
    records: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    first = True
    while next_url:
        async with session.get(next_url, params=params if first else None) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            link = resp.headers.get("Link")
        first = False
        pages += 1
        records.extend(body[key])
        next_url = None
        if link:
            for part in link.split(","):
                target, rel = part.split(";")
                if 'rel="next"' in rel:
                    next_url = target.strip()[1:-1]
    return records, pages


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook endpoint that records raw requests; answers `fail_first` failures first."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    fail_status: int = 500
    slow_first: int = 0
    slow_seconds: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(body, dict(request.headers)))
        if self.slow_first > 0:
            self.slow_first -= 1
            import asyncio

            await asyncio.sleep(self.slow_seconds)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=self.fail_status)
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/shopify", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/webhooks/shopify"
    yield rec
    await runner.cleanup()


async def subscribe(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, topic: str, address: str, version: str = VERSION
) -> dict[str, Any]:
    async with session.post(
        f"{sandbox.url}/admin/api/{version}/webhooks.json",
        json={"webhook": {"topic": topic, "address": address, "format": "json"}},
    ) as resp:
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = (await resp.json())["webhook"]
        return body
