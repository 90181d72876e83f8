"""Fixtures for the Shopify simulator tests: a running sandbox, a client session, a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.shopify import DeliveryConfig, ShopifySandbox, Store
from sandbox.shopify.gql.shapes import topic_enum

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
    store.rate_limit.graphql_maximum = 100_000  # these tests are about behaviour, not throttling
    store.rate_limit.graphql_restore_rate = 100_000
    async with ShopifySandbox(store) as running:
        yield running


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


SUBSCRIBE = """
mutation subscribe($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id legacyResourceId topic uri format apiVersion { handle } }
    userErrors { field message }
  }
}
"""


async def graphql(
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    query: str,
    variables: dict[str, Any] | None = None,
    version: str = VERSION,
) -> dict[str, Any]:
    """One GraphQL Admin API call (HTTP 200 expected); the whole answer."""
    url = f"{sandbox.url}/admin/api/{version}/graphql.json"
    async with session.post(url, json={"query": query, "variables": variables or {}}) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def subscribe(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, topic: str, address: str, version: str = VERSION
) -> dict[str, Any]:
    """`webhookSubscriptionCreate` called at `version`: Shopify delivers the subscription's payloads
    in the version of the call that made it. The created subscription node."""
    variables = {"topic": topic_enum(topic), "sub": {"uri": address, "format": "JSON"}}
    answer = await graphql(session, sandbox, SUBSCRIBE, variables, version)
    result = answer["data"]["webhookSubscriptionCreate"]
    assert result["userErrors"] == [], result
    node: dict[str, Any] = result["webhookSubscription"]
    return node
