"""The webhook route through real HTTP into a real Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from core.jobs import Delivery
from core.keys import Keys
from mappings.installation import Installations
from receiver.webhooks import MAX_BODY_BYTES
from tests.receiver.helpers import SECRET, body_of, headers, queued_jobs, running_receiver

CUSTOMER = {"id": 7000000000001, "email": "jane@example.com", "updated_at": "2024-10-01T12:00:00+02:00"}


async def test_valid_delivery_enqueues_one_job_with_all_fields(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    body = body_of(CUSTOMER)
    h = headers(body, webhook_id="wh-1", event_id="ev-1")
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.post("/webhooks/shopify", data=body, headers=h) as resp:
            assert resp.status == 200
    jobs = await queued_jobs(redis, keys)
    assert len(jobs) == 1
    job = jobs[0]
    assert job["f"] == "sync_customer"
    (delivery,) = job["a"]
    assert delivery["topic"] == "customers/update"
    assert delivery["shop"] == "demo-store.myshopify.com"
    assert delivery["webhook_id"] == "wh-1"
    assert delivery["event_id"] == "ev-1"
    assert delivery["api_version"] == "2024-10"
    assert delivery["triggered_at"] == "2024-10-01T12:00:00.123456789Z"
    assert delivery["body"].encode() == body
    # the worker reads it back whole: every field of Delivery, nothing else
    assert set(delivery) == set(Delivery.__dataclass_fields__)
    assert Delivery.from_arg(delivery).payload() == CUSTOMER
    # the dedup mark names the job, so an operator can go from a webhook id to its job
    job_id = (await redis.zrange(keys.realtime_queue, 0, -1))[0]
    assert await redis.get(keys.dedup("demo-store.myshopify.com", "wh-1")) == job_id
    assert await redis.ttl(keys.dedup("demo-store.myshopify.com", "wh-1")) > 0 and (
        await redis.ttl(keys.dedup("demo-store.myshopify.com", "wh-1")) >= 48 * 3600
    )


async def test_same_webhook_id_twice_is_one_job(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    body = body_of(CUSTOMER)
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        for _ in range(3):
            async with http.post(
                "/webhooks/shopify", data=body, headers=headers(body, webhook_id="same")
            ) as r:
                assert r.status == 200
    assert len(await queued_jobs(redis, keys)) == 1


async def test_same_event_id_different_webhook_ids_are_two_jobs(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    body = body_of(CUSTOMER)
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        for wid in ("a", "b"):
            h = headers(body, webhook_id=wid, event_id="shared-event")
            async with http.post("/webhooks/shopify", data=body, headers=h) as r:
                assert r.status == 200
    assert len(await queued_jobs(redis, keys)) == 2


def _other_body_hmac(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body + b" ", hashlib.sha256).digest()).decode()


def _hex_hmac(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


BODY = body_of(CUSTOMER)
BAD_INPUTS = [
    ("no hmac", BODY, {"X-Shopify-Hmac-Sha256": None}, 401),
    ("hmac of another body", BODY, {"X-Shopify-Hmac-Sha256": _other_body_hmac(BODY)}, 401),
    ("hex hmac", BODY, {"X-Shopify-Hmac-Sha256": _hex_hmac(BODY)}, 401),
    ("garbage hmac", BODY, {"X-Shopify-Hmac-Sha256": "not base64 at all!"}, 401),
    ("another shop's secret", BODY, {"secret": "other-shop-secret"}, 401),
    ("unknown shop", BODY, {"domain": "someone-else.myshopify.com"}, 401),
    ("no shop header", BODY, {"X-Shopify-Shop-Domain": None}, 401),
    ("no topic", BODY, {"topic": None}, 400),
    ("invalid json", b'{"id": 1,', {}, 400),
    ("empty body", b"", {}, 400),
    ("non-utf8 bytes", b'{"name": "\xff\xfe"}', {}, 400),
    ("malformed webhook id", BODY, {"webhook_id": "has space"}, 400),
]


@pytest.mark.parametrize(("name", "body", "change", "status"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_gets_its_status_and_stores_nothing(
    demo_installations: Installations,
    redis: aioredis.Redis,
    keys: Keys,
    name: str,
    body: bytes,
    change: dict[str, str | None],
    status: int,
) -> None:
    kwargs = {k: v for k, v in change.items() if k in ("secret", "domain", "topic", "webhook_id")}
    h = headers(body, **kwargs)  # type: ignore[arg-type]
    for header, value in change.items():
        if header.startswith("X-"):
            if value is None:
                h.pop(header, None)
            else:
                h[header] = value
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.post("/webhooks/shopify", data=body, headers=h) as resp:
            assert resp.status == status
            assert resp.content_type == "application/problem+json"
            problem = await resp.json(content_type=None)
            assert problem["status"] == status and problem["detail"]
    assert await queued_jobs(redis, keys) == []
    assert [k async for k in redis.scan_iter(match=f"{keys.prefix}:dedup:*")] == []


async def test_body_over_limit_is_413_without_storing(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    big = b'{"x": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.post("/webhooks/shopify", data=big, headers=headers(big)) as resp:
            assert resp.status == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(6):
                yield b"a" * (1024 * 1024)

        h = headers(b"whatever")
        try:
            async with http.post("/webhooks/shopify", data=chunks(), headers=h) as resp:
                assert resp.status == 413
        except aiohttp.ClientError:
            pass  # the server may close the connection before the client finishes sending
    assert await queued_jobs(redis, keys) == []


async def test_shopify_escaping_verifies_because_raw_bytes_are_hashed(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    # What Shopify sends: escaped slash, ampersand and line separator; re-serialising would differ.
    body = b'{"id":7000000000002,"note":"a\\/b \\u0026 c\\u2028d","first_name":"\\u00c5sa"}'
    assert orjson.dumps(orjson.loads(body)) != body
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.post("/webhooks/shopify", data=body, headers=headers(body)) as resp:
            assert resp.status == 200
    (job,) = await queued_jobs(redis, keys)
    assert job["a"][0]["body"].encode() == body


PAYLOADS = [
    (
        "customers/update",
        "2020-07",
        {"id": 1, "email": "a@example.com", "accepts_marketing": True, "tags": "vip, x"},
    ),
    (
        "customers/update",
        "2024-10",
        {
            "id": 2,
            "email": "b@example.com",
            "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
            "sms_marketing_consent": None,
            "tags": "",
        },
    ),
    ("customers/update", "2025-01", {"id": 3, "email": "c@example.com", "first_name": "Zoë"}),
    (
        "customers_email_marketing_consent/update",
        "2025-01",
        {
            "customer_id": 3,
            "email_address": "c@example.com",
            "email_marketing_consent": {"state": "unsubscribed"},
        },
    ),
    (
        "customers_marketing_consent/update",
        "2025-01",
        {"id": 3, "phone": "+46701234567", "sms_marketing_consent": {}},
    ),
    ("customers/data_request", "2024-10", {"shop_id": 9, "customer": {"id": 3}, "data_request": {"id": 5}}),
    ("customers/redact", "2024-10", {"shop_id": 9, "customer": {"id": 3}, "orders_to_redact": []}),
    ("shop/redact", "2024-10", {"shop_id": 9, "shop_domain": "demo-store.myshopify.com"}),
]


@pytest.mark.parametrize(("topic", "version", "payload"), PAYLOADS, ids=[f"{t}@{v}" for t, v, _ in PAYLOADS])
async def test_payloads_of_every_version_are_enqueued_unchanged(
    demo_installations: Installations,
    redis: aioredis.Redis,
    keys: Keys,
    topic: str,
    version: str,
    payload: dict[str, object],
) -> None:
    body = body_of(payload)
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        h = headers(body, topic=topic, api_version=version)
        async with http.post("/webhooks/shopify", data=body, headers=h) as resp:
            assert resp.status == 200
    (job,) = await queued_jobs(redis, keys)
    assert job["a"][0]["body"].encode() == body
    assert job["a"][0]["topic"] == topic and job["a"][0]["api_version"] == version


async def test_unknown_topic_is_acknowledged_and_counted_not_enqueued(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    body = body_of({"id": 1})
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        async with http.post(
            "/webhooks/shopify", data=body, headers=headers(body, topic="carts/update")
        ) as r:
            assert r.status == 200
        async with http.get("/metrics") as r:
            text = await r.text()
    assert 'shopsync_webhooks_total{outcome="ignored",topic="other"} 1.0' in text
    assert await queued_jobs(redis, keys) == []


async def test_concurrent_deliveries_share_round_trips(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    from receiver.appkeys import ENQUEUER

    body = body_of(CUSTOMER)
    async with running_receiver(demo_installations, redis, keys) as (server, http):

        async def post(i: int) -> int:
            async with http.post(
                "/webhooks/shopify", data=body, headers=headers(body, webhook_id=f"c{i}")
            ) as r:
                return r.status

        statuses = await asyncio.gather(*(post(i) for i in range(200)))
        enqueuer = server.app[ENQUEUER]
        assert enqueuer.batched_items == 200
        batches = enqueuer.batches
    assert statuses == [200] * 200
    assert len(await queued_jobs(redis, keys)) == 200
    assert batches < 200  # group commit: several deliveries per round trip


async def test_missing_webhook_id_dedups_on_content(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    body = body_of({"id": 42, "updated_at": str(uuid.uuid4())})
    async with running_receiver(demo_installations, redis, keys) as (_, http):
        for _ in range(2):
            h = headers(body)
            del h["X-Shopify-Webhook-Id"]
            async with http.post("/webhooks/shopify", data=body, headers=h) as r:
                assert r.status == 200
    assert len(await queued_jobs(redis, keys)) == 1
