"""Consent 2.0 end to end, through the worker's apply and the APSIS sandbox over HTTP.

- An email change updates the profile's email attribute (the address Email sends to) and sends no
  consent: the profile keeps every topic, those given in APSIS too; the old address is simply no
  longer the profile's.
- An opt-out given in APSIS since the last Shopify consent change (an unsubscribe link) is never
  overridden by an opt-in re-sent for an older Shopify consent; a newer subscribe in Shopify is.
- A suppressed address is reported, never "fixed".
- Staged writes of the Consent 1.0 version (an upgrade mid-apply) are upgraded or dropped.
"""

from __future__ import annotations

import time

import orjson
from redis.asyncio import Redis

from core.keys import Keys
from core.redis_conn import typed
from mappings.installation import CHANNELS
from mappings.state import SyncState
from mappings.writes import ConsentWrite
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import serialize_customer
from tests.e2e.harness import SECTION_MAIN, Pipeline, pipeline, wait_until_time_moves
from worker import sync
from worker.sync_update import Update

EMAIL = CHANNELS["email"]
NEWS, OFFERS = "com.apsis1.topics.news", "com.apsis1.topics.offers"
EXTRA = "com.apsis1.topics.events"  # a topic of the section that demo.toml does not map
OLD, NEW = "old.address@example.com", "new.address@example.org"


def _opted_in(p: Pipeline, customer: Customer) -> list[str]:
    return p.account.opted_in_topics(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN, EMAIL)


def _hook(p: Pipeline, customer: Customer) -> Update:
    now = time.time()
    return Update(
        kind="topic",
        topic="customers/update",
        payload=serialize_customer(customer, p.shop.api_version, for_webhook=True),
        received_at=now,
        triggered_at=now,
    )


def _consent_writes(p: Pipeline, since: int) -> int:
    return len([w for w in p.account.writes_after(since) if w.kind == "consent"])


async def _synced_subscriber(p: Pipeline) -> Customer:
    customer = await p.store.create_customer(email=OLD, email_state="subscribed")
    assert await sync.submit(p.app, p.shop, "wh:first", _hook(p, customer)) == "written"
    assert _opted_in(p, customer) == [NEWS, OFFERS]
    return customer


async def _email_attribute(p: Pipeline, customer: Customer) -> object:
    versions = await p.app.apsis(p.shop).attribute_versions(SECTION_MAIN)
    profile = p.account.profile(p.shop.apsis.keyspace, str(customer.id))
    assert profile is not None
    return profile.attributes[SECTION_MAIN].get(versions["com.apsis1.attributes.email"])


async def test_email_change_updates_the_address_attribute_and_keeps_every_consent(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        assert await _email_attribute(p, customer) == OLD
        # Consent given in APSIS itself (a form): Shopify knows nothing of it.
        p.account.set_consent(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN, EMAIL, EXTRA, "opt-in")
        wait_until_time_moves()
        before = p.account.writes[-1].seq
        moved = await p.store.change_email(customer.id, NEW)

        assert await sync.submit(p.app, p.shop, "wh:moved", _hook(p, moved)) == "written"

        assert await _email_attribute(p, customer) == NEW
        assert _consent_writes(p, before) == 0  # nothing to move: consent is the profile's
        assert _opted_in(p, customer) == [EXTRA, NEWS, OFFERS]
        assert p.mismatches([customer.id]) == []


async def test_an_apsis_opt_out_newer_than_shopify_is_never_overridden(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        wait_until_time_moves()
        # The person clicks an unsubscribe link in an APSIS email: Shopify still says subscribed.
        p.account.set_consent(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN, EMAIL, NEWS, "opt-out")
        # The sync state is lost (say, Redis restored from an old backup): the next update plans
        # the opt-ins again, and APSIS is asked first.
        await p.redis.delete(keys.customer_state(p.shop.domain, customer.id))
        renamed = await p.store.update_customer(customer.id, first_name="Renamed")
        before = p.account.writes[-1].seq

        assert await sync.submit(p.app, p.shop, "wh:renamed", _hook(p, renamed)) == "written"

        assert _opted_in(p, customer) == [OFFERS]  # the opt-out stays
        assert _consent_writes(p, before) == 0  # OFFERS was there already: no request either
        stored = await p.app.customers.load(p.shop.domain, customer.id)
        assert stored.state is not None
        assert {k.topic: v for k, v in stored.state.consents.items() if k.channel == EMAIL} == {
            NEWS: "opt-out",
            OFFERS: "opt-in",
        }


async def test_a_newer_subscribe_in_shopify_wins_over_an_older_apsis_opt_out(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        wait_until_time_moves()
        p.account.set_consent(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN, EMAIL, NEWS, "opt-out")
        wait_until_time_moves()
        out = await p.store.set_email_consent(customer.id, "unsubscribed")
        assert await sync.submit(p.app, p.shop, "wh:out", _hook(p, out)) == "written"
        assert _opted_in(p, customer) == []
        wait_until_time_moves()
        back = await p.store.set_email_consent(customer.id, "subscribed")

        assert await sync.submit(p.app, p.shop, "wh:back", _hook(p, back)) == "written"

        assert _opted_in(p, customer) == [NEWS, OFFERS]


async def test_a_suppressed_address_is_reported_not_fixed(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await p.store.create_customer(email=OLD, email_state="not_subscribed")
        assert await sync.submit(p.app, p.shop, "wh:first", _hook(p, customer)) in ("written", "unchanged")
        p.account.suppress(OLD)
        wait_until_time_moves()
        subscribed = await p.store.set_email_consent(customer.id, "subscribed")

        assert await sync.submit(p.app, p.shop, "wh:sub", _hook(p, subscribed)) == "written"

        raw = await typed(p.redis.hget(keys.suppressed(p.shop.domain), str(customer.id)))
        assert raw is not None and orjson.loads(raw)["channels"] == ["email"]
        assert p.account.suppressed(OLD)  # an opt-in does not lift a suppression, and we do not try
        p.account.unsuppress(OLD)
        wait_until_time_moves()
        moved = await p.store.change_email(customer.id, NEW)
        assert await sync.submit(p.app, p.shop, "wh:moved", _hook(p, moved)) == "written"
        assert await typed(p.redis.hget(keys.suppressed(p.shop.domain), str(customer.id))) is None


async def test_staged_consent_1_writes_are_upgraded_or_dropped(redis: Redis, keys: Keys) -> None:
    """An apply of the Consent 1.0 version staged its writes and died; the new version loads them."""
    from worker.customer_store import CustomerStore

    state = SyncState(customer_id=7, email="now@example.com", phone="+46700000001", sections=(SECTION_MAIN,))
    consent_1 = {
        "channel": EMAIL,
        "section": SECTION_MAIN,
        "consent_list": "com.apsis1.consent-lists.newsletter",
        "topic": NEWS,
        "type": "opt-in",
    }
    staged = {
        "writes": [
            ["consent", {**consent_1, "address": "now@example.com"}],
            ["consent", {**consent_1, "address": "before@example.com", "type": "opt-out"}],
        ],
        "state": {**state.to_dict(), "v": 1},
        "marks": {},
    }
    store = CustomerStore(redis, keys)  # type: ignore[arg-type]
    await redis.set(store.staged_key("shop.myshopify.com", 7), orjson.dumps(staged))
    loaded = await store.load("shop.myshopify.com", 7)
    assert loaded.staged is not None
    assert loaded.staged.writes == (ConsentWrite(SECTION_MAIN, EMAIL, NEWS, "opt-in", "7"),)
