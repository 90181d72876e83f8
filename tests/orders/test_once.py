"""Each order is sent once, also when a send fails half-way or two workers send it together.

These call `worker.orders.send_order` directly (the order webhooks are not subscribed), so a
failure can be injected at an exact point and the retry run right after."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from sandbox.shopify.models import Order
from tests.e2e.harness import SECTION_MAIN, SECTION_VIP, Pipeline, pipeline
from tests.orders.helpers import event_posts, events_of, expected_events, metric, place_custom_order
from worker.errors import ApiError
from worker.orders import posts as orders_module
from worker.orders import send_order
from worker.runtime import TransientError


async def _setup(p: Pipeline, lines: int = 2) -> tuple[int, Order, dict[str, Any]]:
    """A VIP customer (two sections) synced, and an order of theirs as the Orders API shows it."""
    for sub in list(p.store.subscriptions.values()):
        if sub.topic.startswith("orders/"):
            p.store.remove_subscription(sub.id)
    customer = await p.store.create_customer(email="once@example.com", tags=["vip"])
    await p.settle()
    products = sorted(p.store.products)
    order = await place_custom_order(
        p.store, customer.id, [(products[i % len(products)], 1) for i in range(lines)]
    )
    payloads = [
        o async for page in p.app.shopify(p.shop).iter_order_pages(customer_id=customer.id) for o in page
    ]
    (payload,) = [o for o in payloads if o["id"] == order.id]
    return customer.id, order, payload


def _both_sections_once(p: Pipeline, customer_id: int, order: Order) -> None:
    assert events_of(p, str(customer_id), SECTION_MAIN) == expected_events(p.store, order, "2001", "2002")
    assert events_of(p, str(customer_id), SECTION_VIP) == expected_events(p.store, order, "4001", "4002")


async def test_a_failure_after_apsis_stored_the_events_does_not_send_them_again(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p)
        # APSIS stores the POST, then answers 500: did it take it? The sender cannot know.
        p.account.faults.set_errors({500: 1.0}, after_write=True)
        with pytest.raises(ApiError):
            await send_order(p.app, p.shop, payload)
        p.account.faults.set_errors({})
        retry = await send_order(p.app, p.shop, payload)
        # The first section's POST is not repeated (reported as uncertain); the second is sent.
        assert (retry.outcome, retry.uncertain, retry.posts) == ("sent", 3, 1)
        _both_sections_once(p, customer_id, order)
        assert await metric(p, "shopsync_order_events_uncertain_total") == 3
        again = await send_order(p.app, p.shop, payload)
        assert (again.outcome, again.posts) == ("duplicate", 0)
        marks = await redis.hgetall(keys.order_sent(p.shop.domain, order.id, "purchase"))  # type: ignore[misc]
        assert marks == {SECTION_MAIN.encode(): b"sent unknown=3", SECTION_VIP.encode(): b"sent"}


async def test_a_refused_post_is_sent_on_the_retry(redis_url: str, keys: Keys, redis: aioredis.Redis) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p)
        p.account.faults.set_errors({503: 1.0})  # an answer that says "not taken"
        with pytest.raises(ApiError):
            await send_order(p.app, p.shop, payload)
        assert p.account.writes_of("events") == []
        p.account.faults.set_errors({})
        retry = await send_order(p.app, p.shop, payload)
        assert (retry.outcome, retry.uncertain, retry.posts) == ("sent", 0, 2)
        _both_sections_once(p, customer_id, order)


async def test_a_crash_between_the_post_and_its_sent_mark_never_sends_twice(
    redis_url: str, keys: Keys, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p)

        async def crash(*_args: Any) -> None:
            raise RuntimeError("worker killed")

        monkeypatch.setattr(orders_module, "_mark_sent", crash)
        with pytest.raises(RuntimeError):
            await send_order(p.app, p.shop, payload)
        monkeypatch.undo()
        retry = await send_order(p.app, p.shop, payload)
        assert (retry.outcome, retry.uncertain) == ("sent", 3)
        _both_sections_once(p, customer_id, order)


async def test_a_crash_between_the_sending_mark_and_the_post_loses_at_most_that_post(
    redis_url: str, keys: Keys, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented worst case: the items marked `sending` whose POST never left are not
    sent on the retry (it cannot tell them from a POST that did); they are reported."""
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p)
        client = orders_module.events_client(p.app, p.shop)

        async def killed(*_args: Any, **_kwargs: Any) -> int:
            raise asyncio.CancelledError  # the job was cancelled (worker shut down, job timeout)

        monkeypatch.setattr(client, "add_events", killed)
        with pytest.raises(asyncio.CancelledError):
            await send_order(p.app, p.shop, payload)
        monkeypatch.undo()
        retry = await send_order(p.app, p.shop, payload)
        assert (retry.outcome, retry.uncertain, retry.posts) == ("sent", 3, 1)
        assert events_of(p, str(customer_id), SECTION_MAIN) == []
        assert events_of(p, str(customer_id), SECTION_VIP) == expected_events(p.store, order, "4001", "4002")


async def test_a_big_order_failing_half_way_resumes_where_it_stopped(
    redis_url: str, keys: Keys, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p, lines=300)
        client = orders_module.events_client(p.app, p.shop)
        real = client.add_events
        calls = 0

        async def second_refused(*args: Any, **kwargs: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise ApiError("apsis", 400, "bad request", "refused")  # an answer: not taken
            return await real(*args, **kwargs)

        monkeypatch.setattr(client, "add_events", second_refused)
        with pytest.raises(ApiError):
            await send_order(p.app, p.shop, payload)
        monkeypatch.undo()
        before = event_posts(p)
        retry = await send_order(p.app, p.shop, payload)
        assert retry.uncertain == 0 and retry.posts == event_posts(p) - before
        _both_sections_once(p, customer_id, order)


async def test_two_workers_sending_the_same_order_together_send_it_once(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p)
        results = await asyncio.gather(
            *(send_order(p.app, p.shop, payload) for _ in range(5)), return_exceptions=True
        )
        sent = [r for r in results if not isinstance(r, BaseException) and r.outcome == "sent"]
        assert len(sent) == 1
        assert all(
            isinstance(r, TransientError) or (not isinstance(r, BaseException) and r.outcome != "sent")
            for r in results
            if r is not sent[0]
        )
        _both_sections_once(p, customer_id, order)


async def test_a_failure_frees_the_parts_of_a_post_not_tried_yet(
    redis_url: str, keys: Keys, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer_id, order, payload = await _setup(p, lines=10)
        monkeypatch.setattr(orders_module, "MAX_BODY_BYTES", 2_000)  # each post goes in parts
        client = orders_module.events_client(p.app, p.shop)
        real = client.add_events
        calls: list[int] = []

        async def second_part_killed(*args: Any, **kwargs: Any) -> int:
            calls.append(len(args[3]))
            if len(calls) == 2:
                raise asyncio.CancelledError
            return await real(*args, **kwargs)

        monkeypatch.setattr(client, "add_events", second_part_killed)
        with pytest.raises(asyncio.CancelledError):
            await send_order(p.app, p.shop, payload)
        monkeypatch.setattr(client, "add_events", real)
        retry = await send_order(p.app, p.shop, payload)
        lost = calls[1]
        assert (retry.outcome, retry.uncertain) == ("sent", lost)
        main = expected_events(p.store, order, "2001", "2002")
        assert len(main) > calls[0] + lost  # there was a part after the lost one: it was sent
        assert events_of(p, str(customer_id), SECTION_MAIN) == main[: calls[0]] + main[calls[0] + lost :]
        assert events_of(p, str(customer_id), SECTION_VIP) == expected_events(p.store, order, "4001", "4002")
