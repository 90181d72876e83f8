"""`POST /admin/shops/{domain}/full-sync`: token, unknown shop, one sync per shop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core import fullsync_control as control
from core.keys import Keys
from mappings.installation import Installations
from receiver.app import create_app

TOKEN = "admin-secret"
DOMAIN = "demo-store.myshopify.com"


@pytest.fixture
async def client(
    redis: aioredis.Redis, keys: Keys, demo_installations: Installations, redis_url: str
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app(demo_installations, aioredis.Redis.from_url(redis_url), keys=keys, admin_token=TOKEN)
    async with TestClient(TestServer(app)) as c:
        yield c


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_admin_starts_one_sync_per_shop(
    client: TestClient[web.Request, web.Application],
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    assert (await client.post(f"/admin/shops/{DOMAIN}/full-sync")).status == 401
    missing = await client.post("/admin/shops/nope.myshopify.com/full-sync", headers=auth())
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    bad = await client.post(f"/admin/shops/{DOMAIN}/full-sync", headers=auth(), data=b'{"colour": true}')
    assert bad.status == 400
    first = await client.post(f"/admin/shops/{DOMAIN}/full-sync", headers=auth(), json={"force": True})
    assert first.status == 202
    body = await first.json()
    assert body["started"] is True
    second = await client.post(f"/admin/shops/{DOMAIN}/full-sync", headers=auth())
    assert (await second.json()) == {"sync_id": body["sync_id"], "started": False}
    record = await control.read_sync(redis, keys, body["sync_id"])
    assert record is not None and record["force"] is True and record["state"] == "running"
    # The coordinator job is queued on the full-sync queue.
    assert await redis.zscore(keys.fullsync_queue, control.walk_job_id(body["sync_id"], 0)) is not None


async def test_admin_cancels_the_running_sync(
    client: TestClient[web.Request, web.Application],
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    assert (await client.delete(f"/admin/shops/{DOMAIN}/full-sync")).status == 401
    none = await client.delete(f"/admin/shops/{DOMAIN}/full-sync", headers=auth())
    assert none.status == 404 and none.content_type == "application/problem+json"
    # A shop no longer installed: its sync is parked by the workers; this ends it.
    started = await control.start_full_sync(redis, keys, "gone.myshopify.com")
    ended = await client.delete("/admin/shops/Gone.myshopify.com/full-sync", headers=auth())
    assert ended.status == 200
    assert (await ended.json())["sync_id"] == started.sync_id
    record = await control.read_sync(redis, keys, started.sync_id)
    assert record is not None and (record["state"], record["error"]) == ("failed", "cancelled by an operator")
    assert await control.running_sync(redis, keys, "gone.myshopify.com") is None
