"""Real-time sync end to end: store mutations -> webhooks -> receiver -> Redis -> worker -> APSIS."""

from __future__ import annotations

import pytest

from core.keys import Keys
from mappings.installation import CHANNELS
from sandbox.shopify.delivery import DeliveryConfig
from tests.e2e.harness import pipeline

NEWS = "com.apsis1.topics.news"
OFFERS = "com.apsis1.topics.offers"
EXTRA = "com.apsis1.topics.events"  # on the newsletter list, not mapped by demo.toml
SECTION = "com.apsis1.sections.sandbox"
EMAIL = CHANNELS["email"]


@pytest.mark.parametrize("version", ["2020-07", "2022-04", "2024-10", "2025-01"])
async def test_created_updated_deleted_customers_reach_apsis(
    redis_url: str, keys: Keys, version: str
) -> None:
    async with pipeline(redis_url, keys, customers=5, api_version=version) as p:
        a = await p.store.create_customer(email="ada@example.com", email_state="subscribed", tags=["vip"])
        b = await p.store.create_customer(
            email="bo@example.com", phone="+46701112233", sms_state="subscribed", country_code="NO"
        )
        c = await p.store.create_customer(email="cy@example.com")
        await p.settle()
        await p.store.update_customer(b.id, first_name="Björn")
        await p.store.set_email_consent(c.id, "subscribed")
        await p.store.delete_customer(a.id)
        await p.settle()
        assert p.mismatches([a.id, b.id, c.id]) == []
        assert p.account.profile(p.shop.apsis.keyspace, str(a.id)) is None
        profile = p.account.profile(p.shop.apsis.keyspace, str(b.id))
        assert profile is not None and profile.attributes[SECTION]["1002"] == "Björn"
        assert p.account.opted_in_topics(p.shop.apsis.keyspace, str(c.id), SECTION, EMAIL) == [
            NEWS,
            OFFERS,
        ]
        assert await p.dead_letters() == []


async def test_email_change_keeps_consent_including_topics_given_outside_shopify(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer = await p.store.create_customer(email="old@example.com", email_state="subscribed")
        await p.settle()
        keyspace, key = p.shop.apsis.keyspace, str(customer.id)
        # A topic the customer consented to outside Shopify (say, a form in APSIS itself).
        p.account.set_consent(keyspace, key, SECTION, EMAIL, EXTRA, "opt-in")
        await p.store.change_email(customer.id, "new@example.com")
        await p.settle()
        # Consent 2.0: the profile keeps its consents; Email now sends to the new address.
        assert p.account.opted_in_topics(keyspace, key, SECTION, EMAIL) == sorted([NEWS, OFFERS, EXTRA])
        profile = p.account.profile(keyspace, key)
        assert profile is not None and profile.attributes[SECTION]["1001"] == "new@example.com"
        assert p.mismatches([customer.id]) == []


async def test_duplicates_and_reordering_change_nothing(redis_url: str, keys: Keys) -> None:
    delivery = DeliveryConfig(
        time_scale=0.0005, duplicate_rate=0.5, reorder_rate=0.3, reorder_delay=0.2, seed=3
    )
    async with pipeline(redis_url, keys, customers=3, delivery=delivery) as p:
        ids = []
        for i in range(6):
            c = await p.store.create_customer(email=f"c{i}@example.com", email_state="subscribed")
            ids.append(c.id)
        for cid in ids:
            await p.store.update_customer(cid, first_name="Zoë")
            await p.store.set_email_consent(cid, "unsubscribed")
        await p.settle()
        assert p.mismatches(ids) == []
        records = p.store.deliverer.records.values()
        assert sum(r.duplicates_sent for r in records) > 0 and any(r.reordered for r in records)
        assert await p.dead_letters() == []
