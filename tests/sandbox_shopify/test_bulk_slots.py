"""The pool's lease of a shop's bulk-operation slots (worker.shopify_bulk_slots), over real Redis
and the sandbox store, which refuses one bulk query more than the version allows (5 from 2026-01,
one before): exports of several clients (processes) run side by side up to the limit and wait
beyond it instead of being refused; a holder that dies frees its slot when its lease lapses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Shop
from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.graphql import BULK
from tests.clients.conftest import keys, make_shop, redis  # noqa: F401  (fixtures)
from worker import shopify_bulk
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy
from worker.shopify_bulk import BulkOperationBusyError
from worker.shopify_bulk_slots import BulkSlots
from worker.shopify_client import ShopifyClient
from worker.shopify_versions import max_bulk_operations

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, budget_s=10)
CUSTOMERS = 300


@pytest.fixture
async def sandbox() -> AsyncIterator[ShopifySandbox]:
    store = Store(seed=3, size=CUSTOMERS)
    store.rate_limit.graphql_maximum = 100_000  # these tests are about bulk slots, not cost
    store.rate_limit.graphql_restore_rate = 100_000
    async with ShopifySandbox(store) as running:
        running.app[BULK].objects_per_second = CUSTOMERS / 0.6  # each export runs 0.6 s
        yield running


def shop_at(sandbox: ShopifySandbox, version: str) -> Shop:
    store = sandbox.store
    shop = make_shop(sandbox.url)
    return replace(shop, domain=store.domain, access_token=store.access_token, graphql_api_version=version)


ClientFactory = Callable[[Shop], ShopifyClient]


@pytest.fixture
async def clients(redis: Redis, keys: Keys) -> AsyncIterator[ClientFactory]:  # noqa: F811
    """Clients of their own (as separate worker processes have), sharing one Redis."""
    made: list[ShopifyClient] = []

    def make(shop: Shop) -> ShopifyClient:
        client = ShopifyClient(shop, redis, RateLimiter(redis, keys), keys, retry=FAST)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def export(client: ShopifyClient) -> int:
    """One whole customer export through the client (slot taken, polled, released): its lines."""
    return sum([1 async for _ in client.iter_bulk_customers(poll_s=0.05, slot_wait_s=30)])


def test_limit_follows_the_version() -> None:
    assert [max_bulk_operations(v) for v in ("2024-10", "2025-10", "2026-01", "2026-10", "unstable")] == [
        1,
        1,
        5,
        5,
        5,
    ]


async def test_at_most_limit_leases_and_a_lapsed_one_frees(redis: Redis, keys: Keys) -> None:  # noqa: F811
    slots = BulkSlots(redis, keys, "slots.myshopify.com", 5, ttl_ms=300)
    for n in range(5):
        assert (await slots.take(f"h{n}"))[0]
    taken, lapse_s = await slots.take("h5")
    assert not taken and 0 < lapse_s <= 0.3
    assert await slots.take("h0") == (True, 0.0)  # a holder asking again renews its own lease
    await slots.release("h1")
    assert (await slots.take("h5"))[0]
    assert sorted(await slots.held()) == ["h0", "h2", "h3", "h4", "h5"]
    await asyncio.sleep(0.35)  # nobody renewed: every lease lapsed
    assert await slots.held() == []
    assert (await slots.take("h6"))[0]
    await slots.renew("op-1")  # a running operation is always counted, even past the limit
    assert sorted(await slots.held()) == ["h6", "op-1"]


async def test_a_dead_holders_slot_frees_within_its_lease(redis: Redis, keys: Keys) -> None:  # noqa: F811
    dead = BulkSlots(redis, keys, "one.myshopify.com", 1, ttl_ms=400)
    assert await dead.wait("crashed-worker", 0)  # takes the only slot, then never renews
    alive = BulkSlots(redis, keys, "one.myshopify.com", 1, ttl_ms=400)
    assert not await alive.wait("other", 0.1)
    started = time.monotonic()
    assert await alive.wait("other", 2.0)
    assert 0.15 < time.monotonic() - started < 1.5  # the lease lapses ~0.3 s in (slack for busy cores)


async def test_exports_from_2026_01_run_five_at_once_and_never_get_refused(
    sandbox: ShopifySandbox, clients: ClientFactory
) -> None:
    shop = shop_at(sandbox, "2026-10")
    # Seven exports from two "processes": five run together, two wait for a slot.
    pool = [clients(shop), clients(shop)]
    started = time.monotonic()
    lines = await asyncio.gather(*(export(pool[n % 2]) for n in range(7)))
    elapsed = time.monotonic() - started
    registry = sandbox.app[BULK]
    assert lines == [CUSTOMERS] * 7
    assert (registry.peak, registry.refused) == (5, 0)
    assert len(registry.operations) == 7
    assert 1.1 < elapsed < 5.0  # two rounds of 0.6 s, not seven
    assert await pool[0].bulk_slots.held() == []  # every slot given back


async def test_before_2026_01_a_second_export_waits_for_the_first(
    sandbox: ShopifySandbox, clients: ClientFactory
) -> None:
    shop = shop_at(sandbox, "2025-10")
    full_sync, audit = clients(shop), clients(shop)
    assert full_sync.bulk_slots.limit == 1
    started = time.monotonic()
    lines = list(await asyncio.gather(export(full_sync), export(audit)))
    elapsed = time.monotonic() - started
    registry = sandbox.app[BULK]
    assert lines == [CUSTOMERS, CUSTOMERS]
    assert (registry.peak, registry.refused) == (1, 0)
    assert elapsed > 1.15  # one after the other


async def test_without_the_lease_the_sandbox_refuses_and_the_lease_wait_is_bounded(
    sandbox: ShopifySandbox, clients: ClientFactory
) -> None:
    shop = shop_at(sandbox, "2025-10")
    holder, other = clients(shop), clients(shop)
    operation = await holder.run_bulk_customer_export()
    # The sandbox enforces Shopify's limit itself: a start that skips the lease is refused.
    with pytest.raises(BulkOperationBusyError) as refused:
        await shopify_bulk.run_bulk_query(other, other.documents.bulk)
    assert "already in progress" in str(refused.value) and "at most 1 at once" in str(refused.value)
    assert sandbox.app[BULK].refused == 1
    # Through the lease: no slot within the wait is the same transient error, nothing sent.
    sent = len(sandbox.app[BULK].operations)
    with pytest.raises(BulkOperationBusyError) as waited:
        await other.run_bulk_customer_export(slot_wait_s=0.2)
    assert "bulk slots of the shop held by the pool" in str(waited.value)
    assert len(sandbox.app[BULK].operations) == sent
    state = await holder.wait_for_bulk_operation(operation, poll_s=0.05)
    assert state["status"] == "COMPLETED"
    assert await holder.bulk_slots.held() == []  # the completed operation's slot is free again
    await other.run_bulk_customer_export(slot_wait_s=0.2)


async def test_a_refused_start_gives_its_slot_back(sandbox: ShopifySandbox, clients: ClientFactory) -> None:
    shop = shop_at(sandbox, "2025-10")
    client = clients(shop)
    hidden = await shopify_bulk.run_bulk_query(client, client.documents.bulk)  # unknown to the pool
    with pytest.raises(BulkOperationBusyError):
        await client.run_bulk_customer_export(slot_wait_s=0.2)
    assert await client.bulk_slots.held() == []
    await client.wait_for_bulk_operation(hidden, poll_s=0.05)
