"""Each API version's customer fields, the consent and tag topic payloads, and Shopify's JSON escaping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.shopify import ShopifySandbox, Store, serialize_customer, shopify_json
from sandbox.shopify.__main__ import parser, store_of
from sandbox.shopify.models import EMAIL_STATES, SMS_STATES
from sandbox.shopify.serialize import (
    delete_payload,
    email_consent_payload,
    fmt_utc,
    sms_consent_payload,
    tags_payload,
)
from tests.sandbox_shopify.conftest import Receiver, subscribe

BASE = {
    "id", "email", "created_at", "updated_at", "first_name", "last_name", "orders_count", "state", "total_spent",
    "last_order_id", "note", "verified_email", "multipass_identifier", "tax_exempt", "tags", "last_order_name",
    "currency", "phone", "addresses", "tax_exemptions", "admin_graphql_api_id", "default_address",
}  # fmt: skip
LEGACY = {"accepts_marketing", "accepts_marketing_updated_at", "marketing_opt_in_level"}
SMS = {"sms_marketing_consent"}
EMAIL = {"email_marketing_consent"}

EXPECTED = {
    "2020-07": BASE | LEGACY,
    "2021-07": BASE | LEGACY,
    "2021-10": BASE | LEGACY | SMS,
    "2022-04": BASE | LEGACY | SMS | EMAIL,
    "2023-10": BASE | LEGACY | SMS | EMAIL,
    "2024-01": BASE | SMS | EMAIL,
    "2025-01": BASE | SMS | EMAIL,
}
WEBHOOK_2025 = BASE - {"tags"}


@pytest.fixture(scope="module")
def store() -> Store:
    return Store(seed=3, size=400)


def expect(fields: set[str], has_address: bool) -> set[str]:
    """`default_address` is left out (not null) when the customer has no address, as at Shopify."""
    return fields if has_address else fields - {"default_address"}


@pytest.mark.parametrize(("version", "fields"), EXPECTED.items())
def test_rest_fields_per_version(store: Store, version: str, fields: set[str]) -> None:
    customers = list(store.customers())[:80]
    assert any(not c.addresses for c in customers) and any(c.addresses for c in customers)
    for customer in customers:
        has_address = bool(customer.addresses)
        assert set(serialize_customer(customer, version)) == expect(fields, has_address)
        assert set(serialize_customer(customer, version, for_webhook=True)) == expect(
            fields if version < "2025-01" else WEBHOOK_2025, has_address
        )


@pytest.mark.parametrize("version", ["2025-01", "2025-04", "2025-10"])
def test_webhooks_from_2025_01_drop_tags_and_consent(store: Store, version: str) -> None:
    customer = next(c for c in store.customers() if c.addresses)
    assert set(serialize_customer(customer, version, for_webhook=True)) == WEBHOOK_2025


async def test_versions_over_http(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """REST shapes live on as webhook payloads: each subscription's version, delivered over HTTP."""
    for version in EXPECTED:
        await subscribe(session, sandbox, "customers/update", f"{receiver.url}?v={version}", version)
    store = sandbox.store
    with_address = next(c.id for c in store.customers() if c.addresses)
    without = next(c.id for c in store.customers() if not c.addresses)
    for customer_id in (with_address, without):
        await store.update_customer(customer_id, note="seen over HTTP")
    async with asyncio.timeout(30):
        await store.deliverer.settled()
    assert len(receiver.received) == 2 * len(EXPECTED)
    for got in receiver.received:
        version = got.headers["X-Shopify-API-Version"]
        payload = orjson.loads(got.body)
        fields = EXPECTED[version] if version < "2025-01" else WEBHOOK_2025
        assert set(payload) == expect(fields, payload["id"] == with_address), version


def test_consent_shapes(store: Store) -> None:
    customers = list(store.customers())
    with_phone = next(c for c in customers if c.phone and c.email)
    body = serialize_customer(with_phone, "2022-04")
    assert set(body["email_marketing_consent"]) == {"state", "opt_in_level", "consent_updated_at"}
    assert set(body["sms_marketing_consent"]) == {
        "state",
        "opt_in_level",
        "consent_updated_at",
        "consent_collected_from",
    }
    assert body["accepts_marketing"] == (body["email_marketing_consent"]["state"] == "subscribed")
    no_phone = next(c for c in customers if c.phone is None)
    assert serialize_customer(no_phone, "2024-01")["sms_marketing_consent"] is None
    assert email_consent_payload(with_phone) == {
        "customer_id": with_phone.id,
        "email_address": with_phone.email,
        "email_marketing_consent": body["email_marketing_consent"],
    }
    assert sms_consent_payload(with_phone) == {
        "id": with_phone.id,
        "phone": with_phone.phone,
        "sms_marketing_consent": body["sms_marketing_consent"],
    }
    tags = tags_payload(with_phone.id, ["vip"], with_phone.updated_at)
    assert tags["customerId"] == f"gid://shopify/Customer/{with_phone.id}" and tags["tags"] == ["vip"]
    assert set(tags) == {"customerId", "tags", "occurredAt"}
    assert delete_payload(with_phone.id, "2025-01")["id"] == with_phone.id


def test_data_is_realistic(store: Store) -> None:
    customers = list(store.customers())
    emails = {c.email_consent.state for c in customers if c.email_consent}
    sms = {c.sms_consent.state for c in customers if c.sms_consent}
    # REDACTED means the customer's data is erased, the address with it (GraphQL's
    # CustomerEmailAddressMarketingState has no REDACTED): no customer keeps an address in it.
    assert emails == set(EMAIL_STATES) - {"redacted"}
    assert all((c.email_consent is None) == (c.email is None) for c in customers)
    assert sms == set(SMS_STATES)
    assert all((c.sms_consent is None) == (c.phone is None) for c in customers)
    assert all(c.phone is None or (c.phone.startswith("+") and c.phone[1:].isdigit()) for c in customers)
    assert 0.1 < sum(c.phone is None for c in customers) / len(customers) < 0.45
    assert any("vip" in c.tags for c in customers)
    assert any(not c.first_name.isascii() or not c.last_name.isascii() for c in customers)
    countries = [c.default_address.country_code for c in customers if c.default_address]
    assert sum(code in ("SE", "NO", "DK", "FI") for code in countries) / len(countries) > 0.4
    assert {c.state for c in customers} == {"enabled", "disabled", "invited", "declined"}
    ids = [c.id for c in customers]
    assert ids == sorted(ids) and ids[0] >= 7_000_000_000_000
    for c in customers:
        assert c.created_at <= c.updated_at
        orders = [store.order(i) for i in store.orders_of(c.id)]
        assert len(orders) == c.orders_count
        assert c.last_order_id == (orders[-1].id if orders else None)  # type: ignore[union-attr]


def test_same_seed_same_store() -> None:
    def dump(seed: int) -> bytes:
        # One anchor for both: two stores made on each side of midnight UTC differ by a day.
        store = Store(seed=seed, size=60, anchor=datetime(2026, 12, 7, tzinfo=UTC))
        return orjson.dumps([serialize_customer(c, "2024-10") for c in store.customers()])

    assert dump(11) == dump(11)
    assert dump(11) != dump(12)


def test_a_served_store_and_a_copy_with_its_anchor_are_equal_on_any_day() -> None:
    """`python -m sandbox.shopify --anchor`: a bench that checks the served store against its own
    copy after midnight UTC compares the same customers (a day's shift in every date otherwise)."""

    def dump(store: Store) -> bytes:
        return orjson.dumps([serialize_customer(c, "2026-10") for c in store.customers()])

    anchor = 1_796_601_600  # 2026-12-07T00:00:00Z
    served = store_of(parser().parse_args(["--customers", "40", "--anchor", str(anchor)]))
    assert dump(served) == dump(Store(seed=1, size=40, anchor=datetime.fromtimestamp(anchor, UTC)))
    assert dump(served) != dump(Store(seed=1, size=40, anchor=datetime.fromtimestamp(anchor + 86400, UTC)))
    default = store_of(parser().parse_args(["--customers", "40"]))
    assert default.anchor % 86400 == 0  # today, midnight UTC


def test_shopify_json_escapes_like_shopify() -> None:
    body = shopify_json({"name": "Åsa Öberg & Zoë", "url": "https://x/y", "html": "<p>", "emoji": "🎿"})
    assert body.isascii()
    text = body.decode()
    assert (
        "\\u00c5sa" in text
        and "\\u0026" in text
        and "https:\\/\\/x\\/y" in text
        and "\\u003cp\\u003e" in text
    )
    assert "\\ud83c\\udfbf" in text
    assert orjson.loads(body) == {
        "name": "Åsa Öberg & Zoë",
        "url": "https://x/y",
        "html": "<p>",
        "emoji": "🎿",
    }
    assert body != orjson.dumps(orjson.loads(body))  # re-serialising changes the bytes: hash the raw body


async def test_emails_are_unique() -> None:
    from sandbox.shopify import SandboxError

    store = Store(seed=5, size=30)
    taken = next(c for c in store.customers() if c.email)
    other = next(c for c in store.customers() if c.email and c.id != taken.id)
    assert store.customer_id_by_email(taken.email.upper()) == taken.id  # type: ignore[union-attr]
    with pytest.raises(SandboxError, match="already been taken"):
        await store.create_customer(email=taken.email)
    with pytest.raises(SandboxError, match="already been taken"):
        await store.change_email(other.id, taken.email)  # type: ignore[arg-type]
    await store.change_email(taken.id, "moved@example.se")
    created = await store.create_customer(email=taken.email)  # the old address is free again
    assert store.customer_id_by_email("moved@example.se") == taken.id
    assert store.customer_id_by_email(taken.email) == created.id  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**9), max_value=4 * 10**9))
def test_graphql_times_are_utc_with_a_z(ts: int) -> None:
    assert fmt_utc(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
