"""Past orders (full sync `--with-orders`): `sync_past_orders` and `sync_customer_orders`."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from sandbox.shopify.models import Order
from tests.e2e.harness import SECTION_MAIN, SECTION_VIP, Pipeline, pipeline
from tests.fullsync.helpers import wait_finished
from tests.orders.helpers import event_posts, events_of, expected_events, product_gets
from worker.orders import forget_shop_orders, sync_customer_orders, sync_past_orders

DAY = 86400


def _settled(order: Order) -> bool:
    return order.cancelled_at is None and order.financial_status in ("paid", "partially_refunded")


def _history(p: Pipeline, *, days: int | None) -> dict[int, list[Order]]:
    """Customer id -> the orders history must send: settled, within the window."""
    floor = None if days is None else p.store.now() - days * DAY
    out: dict[int, list[Order]] = {}
    for cid in p.store.customer_ids():
        for oid in p.store.orders_of(cid):
            order = p.store.order(oid)
            assert order is not None
            if _settled(order) and (floor is None or order.created_at >= floor):
                out.setdefault(cid, []).append(order)
    return out


def _check(p: Pipeline, history: dict[int, list[Order]]) -> None:
    for cid in p.store.customer_ids():
        orders = history.get(cid, [])
        state = p.expected(cid)
        for section, versions in ((SECTION_MAIN, ("2001", "2002")), (SECTION_VIP, ("4001", "4002"))):
            want: list[dict[str, Any]] = []
            if state is not None and section in state.sections:
                want = [e for o in orders for e in expected_events(p.store, o, *versions)]
            got = events_of(p, str(cid), section)
            assert sorted(got, key=repr) == sorted(want, key=repr), (cid, section)


async def test_history_sends_settled_orders_of_the_last_60_days_once(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=25, seed=11) as p:
        recent = _history(p, days=60)
        older = _history(p, days=None)
        assert sum(map(len, recent.values())) > 0
        assert sum(map(len, older.values())) > sum(map(len, recent.values()))

        result = await sync_past_orders(p.app, p.shop)
        assert result.failed == 0
        assert result.sent == sum(map(len, recent.values()))
        assert result.outcomes["unsettled"] > 0  # pending, refunded, voided orders are left out
        _check(p, recent)
        assert p.mismatches(list(recent)) == []  # their customers were synced first

        # Again: nothing new is sent.
        posts = event_posts(p)
        again = await sync_past_orders(p.app, p.shop)
        assert again.sent == 0 and again.outcomes["duplicate"] == result.sent
        assert event_posts(p) == posts

        # With read_all_orders, older orders come too; the recent ones are not sent again.
        p.store.scopes.add("read_all_orders")
        p.app.clients.pop(f"order-scopes:{p.shop.domain}", None)
        full = await sync_past_orders(p.app, p.shop)
        assert full.created_at_min is None
        assert full.sent == sum(map(len, older.values())) - result.sent
        _check(p, older)
        assert await p.dead_letters() == []


async def test_one_customers_history_and_a_live_order_meet_the_same_dedup(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=25, seed=11) as p:
        p.store.scopes.add("read_all_orders")
        history = _history(p, days=None)
        cid = max(history, key=lambda c: len(history[c]))
        live = await p.store.place_order(cid)  # by webhook, while history runs after
        await p.settle()
        sent = await sync_customer_orders(p.app, p.shop, cid)
        assert sent == len(history[cid])  # the live order was already sent: not again
        assert await sync_customer_orders(p.app, p.shop, cid) == 0
        want = [e for o in [*history[cid], live] for e in expected_events(p.store, o, "2001", "2002")]
        assert sorted(events_of(p, str(cid), SECTION_MAIN), key=repr) == sorted(want, key=repr)
        assert product_gets(p) <= 1 + len(history[cid])
        assert await p.dead_letters() == []


async def test_a_customer_without_orders_costs_no_orders_request(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        c = await p.store.create_customer(email="new@example.com")
        await p.settle()
        assert await sync_customer_orders(p.app, p.shop, c.id) == 0
        assert not any("/orders" in name for (name, _), _n in p.shopify.request_counts().items())


async def test_full_sync_with_orders_sends_the_history_once(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=25, seed=11, workers=("realtime", "fullsync")) as p:
        recent = _history(p, days=60)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain, with_orders=True)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["failed"] == 0
        _check(p, recent)
        posts = event_posts(p)
        again = await control.start_full_sync(p.redis, keys, p.shop.domain, with_orders=True, force=True)
        await wait_finished(p.redis, keys, again.sync_id)
        assert event_posts(p) == posts
        _check(p, recent)
        assert await p.dead_letters() == []


async def test_forgetting_a_shop_removes_its_order_marks_and_products(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        c = await p.store.create_customer(email="gone@example.com")
        await p.settle()
        await p.store.place_order(c.id)
        await p.settle()
        assert await redis.keys(f"{keys.prefix}:order-sent:*") != []
        assert await forget_shop_orders(p.app, p.shop.domain) >= 2
        assert await redis.keys(f"{keys.prefix}:order-sent:*") == []
        assert await redis.keys(f"{keys.prefix}:product:*") == []
