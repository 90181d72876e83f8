"""Health, readiness, metrics, admin auth, and what happens when Redis is down."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from core.keys import Keys
from mappings.installation import Installations
from shopsync.devredis import embedded_redis, free_port
from tests.receiver.helpers import body_of, headers, queued_jobs, running_receiver


async def test_health_ready_metrics(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.get("/healthz") as r:
            assert r.status == 200
        async with http.get("/readyz") as r:
            assert r.status == 200
        async with http.get("/metrics") as r:
            assert r.status == 200
            text = await r.text()
    assert "shopsync_webhook_seconds_bucket" in text
    assert "shopsync_enqueue_failures_total" in text


async def test_admin_routes_need_a_configured_token(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.get("/admin/status") as r:
            assert r.status == 503
    async with running_receiver(demo_installations, redis, keys, admin_token="s3cret") as (_, http):
        async with http.get("/admin/status") as r:
            assert r.status == 401
        async with http.get("/admin/status", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.get("/admin/status", headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 200
            report = await r.json()
    assert {q["name"] for q in report["queues"]} == set(keys.queues)


async def test_redis_down_answers_503_and_the_retry_is_accepted_once(
    demo_installations: Installations, keys: Keys, tmp_path: Path
) -> None:
    port = free_port()
    body = body_of({"id": 1})
    h = headers(body, webhook_id="retried-delivery")
    with embedded_redis(port=port, workdir=tmp_path) as url:
        client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    # Redis is stopped now: the receiver must refuse, not acknowledge.
    async with running_receiver(demo_installations, client, keys) as (_, http):
        async with http.get("/readyz") as r:
            assert r.status == 503
        async with http.post("/webhooks/shopify", data=body, headers=h) as r:
            assert r.status == 503
            assert r.headers.get("Retry-After")
        with embedded_redis(port=port, workdir=tmp_path):
            for _ in range(2):  # Shopify's retry, then a duplicate of it
                async with http.post("/webhooks/shopify", data=body, headers=h) as r:
                    assert r.status == 200
            assert len(await queued_jobs(client, keys)) == 1
            async with http.get("/metrics") as r:
                assert "shopsync_enqueue_failures_total 1.0" in await r.text()
    await client.aclose()


async def test_connection_to_closed_port_is_503(demo_installations: Installations, keys: Keys) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    body = body_of({"id": 1})
    async with running_receiver(demo_installations, client, keys) as (_, http):
        async with http.post("/webhooks/shopify", data=body, headers=headers(body)) as r:
            assert r.status == 503
    await client.aclose()
