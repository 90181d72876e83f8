"""The REST leaky bucket, injected 429s, request counters, and the 401/403/404 answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.shopify import ShopifySandbox, Store
from tests.sandbox_shopify.conftest import HEADERS, VERSION


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def throttled(clock: FakeClock) -> AsyncIterator[ShopifySandbox]:
    async with ShopifySandbox(Store(size=20, monotonic=clock)) as running:
        yield running


async def burst(session: aiohttp.ClientSession, url: str, n: int) -> list[aiohttp.ClientResponse]:
    async def one() -> aiohttp.ClientResponse:
        async with session.get(url) as resp:
            await resp.read()
            return resp

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_bucket_admits_40_then_2_per_second(
    throttled: ShopifySandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    url = f"{throttled.url}/admin/api/{VERSION}/shop.json"
    answers = await burst(session, url, 60)
    assert sorted(r.status for r in answers).count(200) == 40
    refused = [r for r in answers if r.status == 429]
    assert len(refused) == 20
    assert all(r.headers["Retry-After"] == "2.0" for r in refused)
    assert all(r.headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40" for r in refused)
    clock.now += 5.0  # 10 drops leak out
    answers = await burst(session, url, 15)
    assert [r.status for r in answers].count(200) == 10
    clock.now += 100.0
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["X-Shopify-Shop-Api-Call-Limit"] == "1/40"


async def test_plus_bucket(clock: FakeClock, session: aiohttp.ClientSession) -> None:
    store = Store(size=5, monotonic=clock)
    store.rate_limit.bucket_size, store.rate_limit.leak_rate = 400, 20.0
    async with ShopifySandbox(store) as running:
        answers = await burst(session, f"{running.url}/admin/api/{VERSION}/customers/count.json", 420)
        assert [r.status for r in answers].count(200) == 400
        assert answers[0].headers["X-Shopify-Shop-Api-Call-Limit"].endswith("/400")


async def test_injected_429s_and_missing_retry_after(
    throttled: ShopifySandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    cfg = throttled.store.rate_limit
    cfg.bucket_size = 10_000
    cfg.fault_429_rate = 1 / 3
    cfg.retry_after_omit_rate = 0.5
    url = f"{throttled.url}/admin/api/{VERSION}/shop.json"
    statuses = []
    omitted = 0
    for _ in range(300):
        async with session.get(url) as resp:
            statuses.append(resp.status)
            if resp.status == 429 and "Retry-After" not in resp.headers:
                omitted += 1
    refused = statuses.count(429)
    assert 60 <= refused <= 140
    assert 0 < omitted < refused
    counts = throttled.request_counts()
    assert counts[("GET /admin/api/{version}/shop.json", 429)] == refused
    assert counts[("GET /admin/api/{version}/shop.json", 200)] == 300 - refused


async def test_wrong_or_missing_token_is_401(sandbox: ShopifySandbox) -> None:
    url = f"{sandbox.url}/admin/api/{VERSION}/customers.json"
    async with aiohttp.ClientSession() as anonymous:
        for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
            async with anonymous.get(url, headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["errors"].startswith("[API] Invalid API key or access token")
        async with anonymous.get(f"{sandbox.url}/admin/oauth/access_scopes.json") as resp:
            assert resp.status == 401


async def test_missing_scope_is_403(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    sandbox.store.scopes = {"read_customers"}
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/orders.json") as resp:
        assert resp.status == 403
        assert "read_orders" in (await resp.json())["errors"]
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/customers.json") as resp:
        assert resp.status == 200
    async with session.post(
        f"{sandbox.url}/admin/api/{VERSION}/webhooks.json",
        json={"webhook": {"topic": "orders/create", "address": "http://127.0.0.1:1/x"}},
    ) as resp:
        assert resp.status == 403
    async with session.get(f"{sandbox.url}/admin/oauth/access_scopes.json") as resp:
        assert await resp.json() == {"access_scopes": [{"handle": "read_customers"}]}


@pytest.mark.parametrize("version", ["2019-10", "2020-04", "2020-08", "latest", "2099-01"])
async def test_unknown_versions_are_404(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, version: str
) -> None:
    async with session.get(f"{sandbox.url}/admin/api/{version}/customers.json") as resp:
        assert resp.status == 404
        assert await resp.json() == {"errors": "Not Found"}


@pytest.mark.parametrize("version", ["2020-07", "2021-10", "2022-04", "2024-01", "2025-01", "2025-10"])
async def test_known_versions_answer(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, version: str
) -> None:
    async with session.get(f"{sandbox.url}/admin/api/{version}/customers.json?limit=1") as resp:
        assert resp.status == 200
        assert resp.headers["X-Shopify-API-Version"] == version


async def test_missing_records_are_404(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    for path in ("customers/1.json", "products/1.json", "orders/1.json", "webhooks/1.json", "nothing.json"):
        async with session.get(f"{sandbox.url}/admin/api/{VERSION}/{path}") as resp:
            assert resp.status == 404, path
            assert await resp.json() == {"errors": "Not Found"}
    customer_id = next(iter(sandbox.store.customer_ids()))
    await sandbox.store.delete_customer(customer_id)
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/customers/{customer_id}.json") as resp:
        assert resp.status == 404


async def test_single_records(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    store = sandbox.store
    product_id = next(iter(store.products))
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/products/{product_id}.json") as resp:
        product = (await resp.json())["product"]
    assert (
        product["handle"]
        and product["variants"][0]["sku"]
        and product["images"][0]["src"].startswith("https://")
    )
    customer_id = next(iter(store.customer_ids()))
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/customers/{customer_id}.json") as resp:
        assert (await resp.json())["customer"]["id"] == customer_id
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/shop.json") as resp:
        assert (await resp.json())["shop"]["myshopify_domain"] == "demo-store.myshopify.com"
    assert HEADERS["X-Shopify-Access-Token"] == store.access_token
