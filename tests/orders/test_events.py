"""Purchase events end to end: store order -> webhooks -> receiver -> worker -> APSIS events."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from sandbox.shopify.delivery import DeliveryConfig
from tests.e2e.harness import SECTION_MAIN, SECTION_VIP, pipeline
from tests.orders.helpers import (
    customer_gets,
    event_posts,
    events_of,
    expected_events,
    metric,
    place_custom_order,
    product_gets,
)


async def test_paid_order_gives_one_order_event_and_one_event_per_line_in_each_section(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        vip = await p.store.create_customer(email="vip@example.com", tags=["vip"])
        plain = await p.store.create_customer(email="plain@example.com")
        await p.settle()
        orders = [await p.store.place_order(vip.id), await p.store.place_order(plain.id)]
        await p.settle()
        # The VIP is in both sections, with each section's event versions; the other in one.
        got_vip_main = events_of(p, str(vip.id), SECTION_MAIN)
        assert got_vip_main == expected_events(p.store, orders[0], "2001", "2002")
        assert events_of(p, str(vip.id), SECTION_VIP) == expected_events(p.store, orders[0], "4001", "4002")
        assert events_of(p, str(plain.id), SECTION_MAIN) == expected_events(
            p.store, orders[1], "2001", "2002"
        )
        assert events_of(p, str(plain.id), SECTION_VIP) == []
        # orders/create came too (the default event topic is orders/paid): still one set.
        assert await metric(p, "shopsync_orders_total", source="webhook", outcome="other_topic") == 2
        assert await metric(p, "shopsync_orders_total", source="webhook", outcome="sent") == 2
        assert p.mismatches([vip.id, plain.id]) == []
        assert await p.dead_letters() == []


async def test_unpaid_orders_wait_for_payment(redis_url: str, keys: Keys, redis: aioredis.Redis) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        c = await p.store.create_customer(email="a@example.com")
        await p.settle()
        await p.store.place_order(c.id, paid=False)
        await p.settle()
        assert events_of(p, str(c.id), SECTION_MAIN) == []
        assert await p.dead_letters() == []


async def test_stores_without_payments_send_on_create(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3, orders={"event_topic": "orders/create"}) as p:
        c = await p.store.create_customer(email="b@example.com")
        await p.settle()
        unpaid = await p.store.place_order(c.id, paid=False)
        paid = await p.store.place_order(c.id, paid=True)  # create and paid: sent on create only
        await p.settle()
        want = expected_events(p.store, unpaid, "2001", "2002") + expected_events(
            p.store, paid, "2001", "2002"
        )
        got = events_of(p, str(c.id), SECTION_MAIN)
        assert sorted(got, key=repr) == sorted(want, key=repr)
        assert await p.dead_letters() == []


async def test_duplicated_deliveries_send_one_set(redis_url: str, keys: Keys, redis: aioredis.Redis) -> None:
    delivery = DeliveryConfig(
        time_scale=0.0005, duplicate_rate=1.0, reorder_rate=0.3, reorder_delay=0.1, seed=5
    )
    async with pipeline(redis_url, keys, customers=3, delivery=delivery) as p:
        c = await p.store.create_customer(email="dup@example.com", tags=["vip"])
        await p.settle()
        orders = [await p.store.place_order(c.id) for _ in range(4)]
        await p.settle()
        for section, versions in ((SECTION_MAIN, ("2001", "2002")), (SECTION_VIP, ("4001", "4002"))):
            want = [e for o in orders for e in expected_events(p.store, o, *versions)]
            got = events_of(p, str(c.id), section)
            assert sorted(got, key=repr) == sorted(want, key=repr)
        assert await p.dead_letters() == []


async def test_a_300_line_order_is_split_into_posts_under_100_kb(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        p.account.max_body = 100_000  # the stricter reading of "100 kB"; 413 over it
        c = await p.store.create_customer(email="big@example.com")
        await p.settle()
        product_ids = sorted(p.store.products)
        lines = [(product_ids[i % len(product_ids)], 1 + i % 3) for i in range(300)]
        order = await place_custom_order(p.store, c.id, lines)
        await p.settle()
        got = events_of(p, str(c.id), SECTION_MAIN)
        assert got == expected_events(p.store, order, "2001", "2002")
        assert len(got) == 301
        # Several posts, all accepted (none over the limit).
        assert event_posts(p, str(c.id), SECTION_MAIN) >= 2
        assert p.account.request_count("POST", status=413) == 0
        assert await p.dead_letters() == []


async def test_product_details_are_fetched_once_and_refreshed_by_product_webhooks(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customers = [await p.store.create_customer(email=f"fan{i}@example.com") for i in range(5)]
        await p.settle()
        hit, other = sorted(p.store.products)[:2]
        # A flash sale: 40 orders of one product, arriving together.
        for i in range(40):
            await place_custom_order(p.store, customers[i % 5].id, [(hit, 1)])
        await p.settle()
        assert product_gets(p) == 1
        assert sum(len(events_of(p, str(c.id), SECTION_MAIN)) for c in customers) == 80
        # products/update stores the product it carries: no fetch for the next order of it.
        await p.store.update_product(other, title="Renamed")
        await p.settle()
        cached = await redis.get(keys.product(p.shop.domain, other))
        assert cached is not None
        order = await place_custom_order(p.store, customers[0].id, [(other, 2)])
        await p.settle()
        assert product_gets(p) == 1
        got = events_of(p, str(customers[0].id), SECTION_MAIN)
        assert all(e in got for e in expected_events(p.store, order, "2001", "2002"))
        assert await p.dead_letters() == []


async def test_an_order_of_a_customer_never_synced_syncs_the_customer_first(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        # The store's generated customers were never sent by webhook; and the order's own
        # customers/update is not subscribed here, so only the order can sync the customer.
        for sub in list(p.store.subscriptions.values()):
            if sub.topic.startswith("customers/"):
                p.store.remove_subscription(sub.id)
        customer_id = next(p.store.customer_ids())
        assert (await p.app.customers.load(p.shop.domain, customer_id)).state is None
        order = await p.store.place_order(customer_id)
        await p.settle()
        assert p.mismatches([customer_id]) == []
        state = (await p.app.customers.load(p.shop.domain, customer_id)).state
        assert state is not None and SECTION_MAIN in state.sections
        assert events_of(p, str(customer_id), SECTION_MAIN) == expected_events(p.store, order, "2001", "2002")
        assert customer_gets(p) == 1
        assert await metric(p, "shopsync_customers_total", source="order", outcome="written") == 1
        assert await p.dead_letters() == []


async def test_guest_orders_are_skipped_and_counted(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        product = sorted(p.store.products)[0]
        await place_custom_order(p.store, None, [(product, 1)], email="Guest@Example.com")
        await p.settle()
        assert p.account.writes_of("events") == []
        assert await metric(p, "shopsync_orders_total", source="webhook", outcome="guest_skipped") == 1
        assert await p.dead_letters() == []


async def test_guest_orders_keyed_by_email_when_the_installation_asks(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3, orders={"guests": "email"}) as p:
        product = sorted(p.store.products)[0]
        first = await place_custom_order(p.store, None, [(product, 1)], email="Guest@Example.com")
        second = await place_custom_order(p.store, None, [(product, 2)], email="guest@example.com ")
        await p.settle()
        key = "guest:guest@example.com"
        profile = p.account.profile(p.shop.apsis.keyspace, key)
        assert profile is not None
        # Only the section without conditions; the address is set so marketers can find it.
        assert profile.attributes == {SECTION_MAIN: {"1001": "guest@example.com"}}
        want = expected_events(p.store, first, "2001", "2002") + expected_events(
            p.store, second, "2001", "2002"
        )
        assert sorted(profile.events[SECTION_MAIN], key=repr) == sorted(want, key=repr)
        assert SECTION_VIP not in profile.events
        assert await p.dead_letters() == []


@pytest.mark.parametrize("version", ["2020-07", "2025-01"])
async def test_order_webhooks_of_old_and_new_api_versions(
    redis_url: str, keys: Keys, redis: aioredis.Redis, version: str
) -> None:
    async with pipeline(redis_url, keys, customers=3, api_version=version) as p:
        c = await p.store.create_customer(email="v@example.com", tags=["vip"])
        await p.settle()
        order = await p.store.place_order(c.id)
        await p.settle()
        assert events_of(p, str(c.id), SECTION_MAIN) == expected_events(p.store, order, "2001", "2002")
        assert events_of(p, str(c.id), SECTION_VIP) == expected_events(p.store, order, "4001", "4002")
        assert await p.dead_letters() == []
