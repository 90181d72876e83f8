"""Signed deliveries and a running receiver for tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from core.keys import Keys
from mappings.installation import Installations
from receiver.app import create_app
from receiver.signature import sign

DOMAIN = "demo-store.myshopify.com"
SECRET = "sandbox-webhook-secret"


def headers(
    body: bytes,
    *,
    topic: str | None = "customers/update",
    secret: str = SECRET,
    domain: str = DOMAIN,
    webhook_id: str | None = None,
    event_id: str | None = None,
    api_version: str = "2024-10",
    hmac_value: str | None = None,
) -> dict[str, str]:
    h = {
        "Content-Type": "application/json",
        "X-Shopify-Shop-Domain": domain,
        "X-Shopify-Hmac-Sha256": hmac_value if hmac_value is not None else sign(secret, body),
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Triggered-At": "2024-10-01T12:00:00.123456789Z",
    }
    if topic is not None:
        h["X-Shopify-Topic"] = topic
    return h


def body_of(payload: Any) -> bytes:
    return orjson.dumps(payload)


@asynccontextmanager
async def running_receiver(
    installations: Installations, redis: aioredis.Redis, keys: Keys, admin_token: str | None = None
) -> AsyncIterator[tuple[TestServer, aiohttp.ClientSession]]:
    app = create_app(installations, redis, keys=keys, admin_token=admin_token, close_redis=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
            yield server, session
    finally:
        await server.close()


async def queued_jobs(redis: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every job on the real-time queue, decoded (function name and arguments)."""
    jobs = []
    for job_id in await redis.zrange(keys.realtime_queue, 0, -1):
        raw = await redis.get(b"arq:job:" + job_id)
        assert raw is not None, "queue member without job data"
        jobs.append(orjson.loads(raw))
    return jobs
