"""Webhook subscriptions and deliveries: signatures, headers, versions, retries and injected faults."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac

import aiohttp
import orjson

from sandbox.shopify import SandboxError, ShopifySandbox
from sandbox.shopify.activity import WEIGHTS
from tests.sandbox_shopify.conftest import SUBSCRIBE, Receiver, graphql, subscribe

ALL_HEADERS = (
    "X-Shopify-Topic",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Shop-Domain",
    "X-Shopify-API-Version",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
)


def verifies(secret: str, body: bytes, signature: str) -> bool:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(digest, signature)


async def settle(sandbox: ShopifySandbox) -> None:
    async with asyncio.timeout(30):
        await sandbox.store.deliverer.settled()


async def test_subscription_keeps_the_version_of_its_call(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    created = await subscribe(session, sandbox, "customers/update", receiver.url, "2025-01")
    assert created["apiVersion"]["handle"] == "2025-01" and created["format"] == "JSON"
    assert sandbox.store.subscriptions[int(created["legacyResourceId"])].api_version == "2025-01"
    variables = {"topic": "CUSTOMERS_UPDATE", "sub": {"uri": receiver.url}}
    again = (await graphql(session, sandbox, SUBSCRIBE, variables))["data"]["webhookSubscriptionCreate"]
    assert again["userErrors"][0]["message"] == "Address for this topic has already been taken"
    unknown = await graphql(session, sandbox, SUBSCRIBE, {**variables, "topic": "NOPE_NOPE"})
    assert unknown.get("data") is None and "NOPE_NOPE" in unknown["errors"][0]["message"]
    assert len(sandbox.store.subscriptions) == 1


async def test_signed_delivery_with_every_header(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    store = sandbox.store
    await subscribe(session, sandbox, "customers/update", receiver.url)
    await subscribe(session, sandbox, "customers_email_marketing_consent/update", receiver.url, "2025-01")
    customer_id = next(c.id for c in store.customers() if c.email)
    await store.update_customer(customer_id, first_name="Åsa-Märta", city="Malmö")
    await store.set_email_consent(customer_id, "subscribed", "confirmed_opt_in")
    await settle(sandbox)
    assert len(receiver.received) == 3
    for got in receiver.received:
        for header in ALL_HEADERS:
            assert got.headers.get(header), header
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Shopify-Shop-Domain"] == "demo-store.myshopify.com"
        assert verifies("sandbox-webhook-secret", got.body, got.headers["X-Shopify-Hmac-Sha256"])
        assert got.body.isascii()
        if (
            got.headers["X-Shopify-Topic"] == "customers/update"
        ):  # escaped: a re-serialisation breaks the HMAC
            assert b"gid:\\/\\/shopify\\/Customer" in got.body
            resigned = orjson.dumps(orjson.loads(got.body))
            assert not verifies("sandbox-webhook-secret", resigned, got.headers["X-Shopify-Hmac-Sha256"])
    assert len({g.headers["X-Shopify-Webhook-Id"] for g in receiver.received}) == 3
    topics = [g.headers["X-Shopify-Topic"] for g in receiver.received]
    assert sorted(topics) == [
        "customers/update",
        "customers/update",
        "customers_email_marketing_consent/update",
    ]
    consent = next(g for g in receiver.received if g.headers["X-Shopify-Topic"].startswith("customers_email"))
    update2 = [g for g in receiver.received if g.headers["X-Shopify-Topic"] == "customers/update"][1]
    assert (
        consent.headers["X-Shopify-Event-Id"] == update2.headers["X-Shopify-Event-Id"]
    )  # one merchant action
    assert consent.headers["X-Shopify-API-Version"] == "2025-01"
    assert orjson.loads(consent.body)["email_marketing_consent"]["state"] == "subscribed"
    first = orjson.loads(receiver.received[0].body)
    assert first["first_name"] == "Åsa-Märta" and first["default_address"]["city"] == "Malmö"
    assert b"\\u00c5sa-M\\u00e4rta" in receiver.received[0].body


async def test_webhook_payload_follows_subscription_version(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    store = sandbox.store
    await subscribe(session, sandbox, "customers/create", receiver.url, "2020-07")
    await subscribe(session, sandbox, "customers/create", receiver.url + "?new", "2025-01")
    await store.create_customer(email="zoe.lefevre@example.fr", first_name="Zoë", tags=["vip"])
    await settle(sandbox)
    by_version = {g.headers["X-Shopify-API-Version"]: orjson.loads(g.body) for g in receiver.received}
    assert "accepts_marketing" in by_version["2020-07"] and by_version["2020-07"]["tags"] == "vip"
    assert "email_marketing_consent" not in by_version["2020-07"]
    assert not {"tags", "email_marketing_consent", "sms_marketing_consent", "accepts_marketing"} & set(
        by_version["2025-01"]
    )


async def test_each_mutation_emits_its_topics(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    store = sandbox.store
    topics = [
        "customers/create", "customers/update", "customers/delete", "customers/enable", "customers/disable",
        "customers_email_marketing_consent/update", "customers_marketing_consent/update",
        "customer.tags_added", "customer.tags_removed", "orders/create", "orders/paid", "products/update",
    ]  # fmt: skip
    for topic in topics:
        await subscribe(session, sandbox, topic, receiver.url)
    customer = next(c for c in store.customers() if c.phone and c.email and "vip" not in c.tags)
    await store.add_tags(customer.id, ["vip"])
    await store.remove_tags(customer.id, ["vip"])
    await store.set_sms_consent(customer.id, "subscribed")
    await store.change_email(customer.id, "ny.adress@example.se")
    await store.update_customer(customer.id, state="enabled" if customer.state != "enabled" else "disabled")
    await store.place_order(customer.id, paid=True)
    await store.update_product(next(iter(store.products)), price="249.00")
    await store.delete_customer(customer.id)
    await settle(sandbox)
    seen = {g.headers["X-Shopify-Topic"]: orjson.loads(g.body) for g in receiver.received}
    assert set(topics) - {"customers/create"} - set(seen) <= {"customers/enable", "customers/disable"}
    assert seen["customer.tags_added"]["tags"] == ["vip"]
    assert seen["customers_marketing_consent/update"]["sms_marketing_consent"]["state"] == "subscribed"
    assert seen["customers_email_marketing_consent/update"]["email_address"] == "ny.adress@example.se"
    assert seen["orders/paid"]["customer"]["id"] == customer.id and seen["orders/paid"]["line_items"]
    assert seen["customers/delete"]["id"] == customer.id
    assert float(seen["orders/create"]["total_price"]) > 0


async def test_retries_until_2xx(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.fail_first = 4
    await subscribe(session, sandbox, "customers/update", receiver.url)
    customer_id = next(iter(sandbox.store.customer_ids()))
    await sandbox.store.update_customer(customer_id, note="ring först")
    await settle(sandbox)
    assert len(receiver.received) == 5
    assert len({g.headers["X-Shopify-Webhook-Id"] for g in receiver.received}) == 1
    assert len({g.body for g in receiver.received}) == 1
    (record,) = sandbox.store.deliverer.records.values()
    assert (
        record.state == "delivered" and record.attempts == 5 and record.statuses == [500, 500, 500, 500, 200]
    )


async def test_slow_receiver_times_out_and_is_retried(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sandbox.store.deliverer.config.answer_timeout = 0.2
    receiver.slow_first, receiver.slow_seconds = 1, 2.0
    await subscribe(session, sandbox, "customers/update", receiver.url)
    await sandbox.store.update_customer(next(iter(sandbox.store.customer_ids())), note="x")
    await settle(sandbox)
    (record,) = sandbox.store.deliverer.records.values()
    assert record.statuses == ["timeout", 200]


async def test_gives_up_and_removes_the_subscription(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.fail_first = 10_000
    await subscribe(session, sandbox, "customers/update", receiver.url)
    await sandbox.store.update_customer(next(iter(sandbox.store.customer_ids())), note="x")
    await settle(sandbox)
    (record,) = sandbox.store.deliverer.records.values()
    assert record.state == "failed" and record.attempts == 1 + len(
        sandbox.store.deliverer.config.retry_delays
    )
    assert sandbox.store.subscriptions == {}


async def test_duplicates_resend_the_same_webhook_id(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sandbox.store.deliverer.config.duplicate_rate = 1.0
    await subscribe(session, sandbox, "customers/update", receiver.url)
    ids = list(sandbox.store.customer_ids())[:5]
    for customer_id in ids:
        await sandbox.store.update_customer(customer_id, note="dup")
    await settle(sandbox)
    assert len(receiver.received) == 10
    webhook_ids = [g.headers["X-Shopify-Webhook-Id"] for g in receiver.received]
    assert len(set(webhook_ids)) == 5 and all(webhook_ids.count(w) == 2 for w in webhook_ids)
    assert all(r.duplicates_sent == 1 for r in sandbox.store.deliverer.records.values())


async def test_reorder_and_delay_injection(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    cfg = sandbox.store.deliverer.config
    cfg.reorder_rate, cfg.reorder_delay = 0.3, 0.05
    cfg.delay_rate, cfg.delay_range = 0.2, (0.01, 0.1)
    await subscribe(session, sandbox, "customers/update", receiver.url)
    ids = list(sandbox.store.customer_ids())[:40]
    for customer_id in ids:
        await sandbox.store.update_customer(customer_id, note="order")
    await settle(sandbox)
    records = list(sandbox.store.deliverer.records.values())
    assert all(r.state == "delivered" for r in records)
    assert any(r.reordered for r in records) and any(r.delayed for r in records)
    arrived = [orjson.loads(g.body)["id"] for g in receiver.received]
    assert sorted(arrived) == sorted(ids) and arrived != ids


async def test_control_api_mutates_and_reports(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await subscribe(session, sandbox, "customers/create", receiver.url)
    async with session.post(
        f"{sandbox.url}/_sandbox/customers", json={"email": "ctl@example.se", "tags": ["vip"]}
    ) as resp:
        assert resp.status == 201
        customer_id = (await resp.json())["customer"]["id"]
    async with session.post(
        f"{sandbox.url}/_sandbox/customers/{customer_id}/email_consent", json={"state": "subscribed"}
    ) as resp:
        assert (await resp.json())["customer"]["email_marketing_consent"]["state"] == "subscribed"
    async with session.post(
        f"{sandbox.url}/_sandbox/customers/{customer_id}/sms_consent", json={"state": "subscribed"}
    ) as resp:
        assert resp.status == 422  # no phone
    async with session.post(f"{sandbox.url}/_sandbox/orders", json={"customer_id": customer_id}) as resp:
        assert resp.status == 201
    async with session.delete(f"{sandbox.url}/_sandbox/customers/1") as resp:
        assert resp.status == 404
    async with session.post(
        f"{sandbox.url}/_sandbox/config", json={"rate_limit": {"fault_429_rate": 0.5}}
    ) as resp:
        assert (await resp.json())["rate_limit"]["fault_429_rate"] == 0.5
    await settle(sandbox)
    async with session.get(f"{sandbox.url}/_sandbox/deliveries") as resp:
        (delivery,) = await resp.json()
        assert delivery["topic"] == "customers/create" and delivery["state"] == "delivered"
    async with session.get(f"{sandbox.url}/_sandbox/requests") as resp:
        assert any(r["route"] == "POST /_sandbox/customers" for r in await resp.json())


async def test_activity_mode_makes_changes(
    sandbox: ShopifySandbox, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    for topic in ("customers/update", "orders/create", "customers/create"):
        await subscribe(session, sandbox, topic, receiver.url)
    activity = sandbox.activity
    for kind, _weight in WEIGHTS:
        with contextlib.suppress(SandboxError):  # e.g. an SMS change picked a customer without a phone
            await activity.step(kind)
    activity.rate = 200.0
    activity.start()
    async with asyncio.timeout(30):
        while sum(activity.done.values()) < 40:  # noqa: ASYNC110 - polling a counter is simplest here
            await asyncio.sleep(0.02)
    await activity.stop()
    await settle(sandbox)
    assert not activity.running and sum(activity.done.values()) >= 40
    assert receiver.received
    assert all(
        verifies("sandbox-webhook-secret", g.body, g.headers["X-Shopify-Hmac-Sha256"])
        for g in receiver.received
    )


async def test_control_api_rejects_malformed_bodies(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{sandbox.url}/_sandbox/orders", json={}) as resp:
        assert resp.status == 422
    async with session.post(f"{sandbox.url}/_sandbox/customers", json={"colour": "blå"}) as resp:
        assert resp.status == 422
    customer_id = next(iter(sandbox.store.customer_ids()))
    async with session.patch(
        f"{sandbox.url}/_sandbox/customers/{customer_id}", json={"email": "x@y.se"}
    ) as resp:
        assert resp.status == 422  # emails change through /email


async def test_triggered_at_can_be_missing(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sandbox.store.deliverer.config.triggered_at_omit_rate = 1.0
    await subscribe(session, sandbox, "customers/update", receiver.url)
    await sandbox.store.update_customer(next(iter(sandbox.store.customer_ids())), note="old-style")
    await settle(sandbox)
    (got,) = receiver.received
    assert "X-Shopify-Triggered-At" not in got.headers and got.headers["X-Shopify-Webhook-Id"]
