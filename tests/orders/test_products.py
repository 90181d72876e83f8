"""The product cache: one request per product however many orders, newest product wins."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from core.keys import Keys
from mappings.orders import ProductInfo
from sandbox.shopify.serialize import serialize_product
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.orders.helpers import events_of, metric, place_custom_order, product_gets
from worker.products import ProductCache, products_of


async def test_concurrent_misses_in_several_processes_make_one_request(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=1) as p:
        ids = sorted(p.store.products)[:3]
        # Three "processes" (each its own single flight), each asking several times at once.
        caches = [ProductCache(p.app, p.shop) for _ in range(3)]
        results = await asyncio.gather(*(c.get_many(ids) for c in caches for _ in range(4)))
        assert product_gets(p) == 1
        product = p.store.products[ids[0]]
        want = ProductInfo(
            product.id,
            product.handle,
            product.images[0].src if product.images else None,
            product.product_type or None,
            product.vendor,
        )
        assert all(r[ids[0]] == want for r in results)


async def test_unknown_products_are_remembered_as_missing(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=1) as p:
        cache = products_of(p.app, p.shop)
        known = sorted(p.store.products)[0]
        assert set(await cache.get_many([known, 999])) == {known}
        assert set(await cache.get_many([known, 999])) == {known}
        assert product_gets(p) == 1


async def test_an_older_product_never_replaces_a_newer_one(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=1) as p:
        cache = products_of(p.app, p.shop)
        product = serialize_product(p.store.products[sorted(p.store.products)[0]])
        newer = {**product, "updated_at": "2030-01-02T00:00:00+01:00", "handle": "new-handle"}
        older = {**product, "updated_at": "2030-01-01T00:00:00+01:00", "handle": "old-handle"}
        assert await cache.store_product(newer) is True
        assert await cache.store_product(older) is False
        assert (await cache.get_many([product["id"]]))[product["id"]].handle == "new-handle"
        assert product_gets(p) == 0


async def test_an_order_already_cancelled_when_its_webhook_arrives_is_not_sent(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=1, orders={"event_topic": "orders/create"}) as p:
        c = await p.store.create_customer(email="cancel@example.com")
        await p.settle()
        await place_custom_order(
            p.store, c.id, [(sorted(p.store.products)[0], 1)], paid=False, cancelled=True
        )
        await p.settle()
        assert events_of(p, str(c.id), SECTION_MAIN) == []
        assert await metric(p, "shopsync_orders_total", source="webhook", outcome="cancelled") == 1
        assert await p.dead_letters() == []
