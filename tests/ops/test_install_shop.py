"""The `install_shop` job the OAuth callback enqueues: the webhooks point at the receiver, an
earlier uninstall is forgotten and a full sync starts; run again it changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import tomli_w
from arq.connections import ArqRedis, create_pool

from core.jobs import deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings, typed
from core.settings import Settings
from mappings.installation_parse import parse_installations_toml
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from tests.ops.helpers import sandbox_document
from worker.context import WorkerContext
from worker.install import install_shop, needed_topics
from worker.jobs import realtime_functions

DOMAIN = "demo-store.myshopify.com"
ADDRESS = "https://sync.example.com/webhooks/shopify"


@pytest.fixture
async def ctx(redis_url: str, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[dict[str, Any]]:
    async with ShopifySandbox(Store(size=3)) as shopify:
        text = tomli_w.dumps(sandbox_document(shopify.url, "http://127.0.0.1:1"))
        installations = parse_installations_toml(text, {}, source="test.toml")
        pool: ArqRedis = await create_pool(
            arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize
        )
        app = WorkerContext(settings=Settings(), installations=installations, redis=pool, keys=keys)
        try:
            yield {"app": app, "job_id": "install-test", "job_try": 1, "store": shopify.store}
        finally:
            await app.close()
            await pool.aclose()


def subscribed(store: Store) -> dict[str, str]:
    return {sub.topic: sub.address for sub in store.subscriptions.values()}


async def test_install_shop_registers_webhooks_and_starts_a_full_sync(
    ctx: dict[str, Any], redis: aioredis.Redis, keys: Keys
) -> None:
    assert install_shop in realtime_functions()
    store: Store = ctx["store"]
    store.add_subscription("customers/update", "https://old.example.com/webhooks/shopify", "2024-10")
    await typed(redis.sadd(keys.uninstalled, DOMAIN))

    result = await install_shop(ctx, {"shop": DOMAIN, "address": ADDRESS})
    assert result["problems"] == [] and result["was_uninstalled"] is True
    assert result["replaced"] == ["customers/update"]
    assert subscribed(store) == {topic: ADDRESS for topic in needed_topics("2024-10")}
    assert not await typed(redis.sismember(keys.uninstalled, DOMAIN))
    assert (await redis.get(keys.full_sync(DOMAIN))).decode() == result["sync_id"]

    again = await install_shop(ctx, {"shop": DOMAIN, "address": ADDRESS})
    assert again["created"] == [] and again["replaced"] == [] and len(again["kept"]) == len(subscribed(store))
    assert again["sync_id"] == result["sync_id"]  # the running full sync, not a second one
