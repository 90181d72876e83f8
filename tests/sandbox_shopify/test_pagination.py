"""GraphQL cursor pagination as Shopify does it: every record once forward and back, filters kept
by the cursor's query, page sizes 1 to 250, bad cursors refused, orders older than 60 days hidden
without `read_all_orders`."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import pytest

from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.serialize import fmt_utc
from tests.sandbox_shopify.conftest import graphql

VERSION = "2026-10"
CUSTOMERS = """query($first: Int, $last: Int, $after: String, $before: String, $q: String) {
  customers(first: $first, last: $last, after: $after, before: $before, query: $q, sortKey: ID) {
    nodes { legacyResourceId }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
ORDERS = """query($after: String) {
  orders(first: 250, after: $after, sortKey: CREATED_AT, reverse: true) {
    nodes { legacyResourceId } pageInfo { hasNextPage endCursor }
  }
}"""


async def walk(
    session: aiohttp.ClientSession, sandbox: ShopifySandbox, size: int, q: str | None = None
) -> tuple[list[int], int]:
    """Follow `endCursor` from the first page: (ids in order, pages)."""
    ids: list[int] = []
    pages = 0
    after = None
    while True:
        answer = await graphql(session, sandbox, CUSTOMERS, {"first": size, "after": after, "q": q}, VERSION)
        page = answer["data"]["customers"]
        pages += 1
        ids += [int(n["legacyResourceId"]) for n in page["nodes"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            return ids, pages
        after = page["pageInfo"]["endCursor"]


async def walk_back(session: aiohttp.ClientSession, sandbox: ShopifySandbox, size: int) -> list[int]:
    """Follow `startCursor` backwards from the last page (`last`/`before`): ids in listing order."""
    ids: list[int] = []
    before = None
    while True:
        answer = await graphql(session, sandbox, CUSTOMERS, {"last": size, "before": before}, VERSION)
        page = answer["data"]["customers"]
        ids = [int(n["legacyResourceId"]) for n in page["nodes"]] + ids
        if not page["pageInfo"]["hasPreviousPage"]:
            return ids
        before = page["pageInfo"]["startCursor"]


@pytest.mark.parametrize("size", [1, 7, 250])
async def test_walk_visits_every_customer_once(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, size: int
) -> None:
    ids, pages = await walk(session, sandbox, size)
    assert ids == list(sandbox.store.customer_ids())
    assert pages == max(1, -(-len(ids) // size))


async def test_filter_goes_with_the_cursor(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    store = sandbox.store
    since = sorted(store.updated_at(i) for i in store.customer_ids())[40]
    ids, pages = await walk(session, sandbox, 9, f"updated_at:>'{fmt_utc(since)}'")
    assert ids == [i for i in store.customer_ids() if store.updated_at(i) > since]
    assert pages > 1


async def test_deleted_and_created_customers_are_walked(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store
    gone = list(store.customer_ids())[5]
    await store.delete_customer(gone)
    created = await store.create_customer(email="walked@example.se")
    ids, _ = await walk(session, sandbox, 50)
    assert gone not in ids and ids[-1] == created.id and len(ids) == len(set(ids)) == store.customer_count()


@pytest.mark.parametrize("variables", [{"first": 251}, {"first": -1}, {}, {"first": 5, "last": 5}])
async def test_page_sizes_outside_1_to_250_are_errors(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, variables: dict[str, Any]
) -> None:
    answer = await graphql(session, sandbox, CUSTOMERS, variables, VERSION)
    assert answer["errors"] and not (answer.get("data") or {}).get("customers")


async def test_a_bad_cursor_is_an_error(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    answer = await graphql(session, sandbox, CUSTOMERS, {"first": 5, "after": "bm90IGEgY3Vyc29y"}, VERSION)
    assert answer["errors"][0]["message"].startswith("Invalid cursor")


async def test_orders_older_than_60_days_need_read_all_orders(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store

    async def order_ids() -> list[int]:
        ids: list[int] = []
        after = None
        while True:
            page = (await graphql(session, sandbox, ORDERS, {"after": after}, VERSION))["data"]["orders"]
            ids += [int(n["legacyResourceId"]) for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                return ids
            after = page["pageInfo"]["endCursor"]

    store.scopes.discard("read_all_orders")
    recent = await order_ids()
    store.scopes.add("read_all_orders")
    every = await order_ids()
    floor = store.now() - 60 * 86400
    created = {i: store.order(i).created_at for i in every}  # type: ignore[union-attr]
    assert set(recent) == {i for i in every if created[i] >= floor}
    assert len(recent) < len(every)
    assert [created[i] for i in every] == sorted(created.values(), reverse=True)  # newest first


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_walk_forward_and_back_with_deletions(session: aiohttp.ClientSession, seed: int) -> None:
    rng = random.Random(seed)
    store = Store(seed=seed, size=rng.randrange(1, 90))
    store.rate_limit.graphql_maximum = 100_000
    store.rate_limit.graphql_restore_rate = 100_000
    async with ShopifySandbox(store) as running:
        for customer_id in rng.sample(list(store.customer_ids()), k=len(list(store.customer_ids())) // 3):
            await store.delete_customer(customer_id)
        size = rng.randrange(1, 12)
        expected = list(store.customer_ids())
        forward, _ = await walk(session, running, size)
        assert forward == expected
        assert await walk_back(session, running, size) == expected
