"""Cursor pagination as Shopify does it: every record once, filters kept in page_info, Shopify's 400s."""

from __future__ import annotations

import aiohttp
import pytest

from sandbox.shopify import ShopifySandbox
from sandbox.shopify.serialize import fmt_time
from tests.sandbox_shopify.conftest import VERSION, walk


def all_ids(sandbox: ShopifySandbox) -> list[int]:
    """Every customer id in listing order: newest (highest id) first, as Shopify lists."""
    return list(sandbox.store.customer_ids(descending=True))


@pytest.mark.parametrize("limit", [1, 7, 250])
async def test_walk_visits_every_customer_once(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, limit: int
) -> None:
    records, pages = await walk(
        session, f"{sandbox.url}/admin/api/{VERSION}/customers.json", {"limit": str(limit)}
    )
    ids = [r["id"] for r in records]
    assert ids == all_ids(sandbox)
    assert pages == -(-len(ids) // limit)


async def test_default_limit_is_50(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/customers.json") as resp:
        assert len((await resp.json())["customers"]) == 50
        assert 'rel="next"' in resp.headers["Link"]
        assert 'rel="previous"' not in resp.headers["Link"]


async def test_walk_with_updated_at_min_keeps_the_filter(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store
    times = sorted(store.updated_at(i) for i in store.customer_ids())
    cutoff = times[len(times) // 2]
    expected = [i for i in store.customer_ids(descending=True) if store.updated_at(i) >= cutoff]
    records, _ = await walk(
        session,
        f"{sandbox.url}/admin/api/{VERSION}/customers.json",
        {"limit": "7", "updated_at_min": fmt_time(cutoff) or ""},
    )
    assert [r["id"] for r in records] == expected
    assert 0 < len(expected) < len(times)


async def test_walk_with_since_id(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    ids = list(sandbox.store.customer_ids())  # since_id lists ascending ids
    since = ids[40]
    records, _ = await walk(
        session, f"{sandbox.url}/admin/api/{VERSION}/customers.json", {"limit": "9", "since_id": str(since)}
    )
    assert [r["id"] for r in records] == ids[41:]


async def test_previous_link_walks_back(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    url = f"{sandbox.url}/admin/api/{VERSION}/customers.json"
    async with session.get(url, params={"limit": "10"}) as resp:
        first = [c["id"] for c in (await resp.json())["customers"]]
        next_url = resp.headers["Link"].split(";")[0].strip()[1:-1]
    async with session.get(next_url) as resp:
        second = [c["id"] for c in (await resp.json())["customers"]]
        links = dict(
            (part.split(";")[1].strip(), part.split(";")[0].strip()[1:-1])
            for part in resp.headers["Link"].split(",")
        )
    assert second == all_ids(sandbox)[10:20]
    async with session.get(links['rel="previous"']) as resp:
        assert [c["id"] for c in (await resp.json())["customers"]] == first


async def test_deleted_and_created_customers_are_walked(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store
    victim = all_ids(sandbox)[3]
    await store.delete_customer(victim)
    created = await store.create_customer(email="ny.kund@example.se")
    records, _ = await walk(session, f"{sandbox.url}/admin/api/{VERSION}/customers.json", {"limit": "250"})
    ids = [r["id"] for r in records]
    assert victim not in ids and ids[0] == created.id and len(ids) == len(set(ids)) == store.customer_count()


async def test_filter_with_page_info_is_400(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    url = f"{sandbox.url}/admin/api/{VERSION}/customers.json"
    async with session.get(url, params={"limit": "5"}) as resp:
        next_url = resp.headers["Link"].split(";")[0].strip()[1:-1]
    async with session.get(next_url + "&updated_at_min=2020-01-01T00:00:00Z") as resp:
        assert resp.status == 400
        assert "updated_at_min" in (await resp.json())["errors"]
    async with session.get(next_url + "&fields=id,email") as resp:
        assert resp.status == 200
        assert all(set(c) == {"id", "email"} for c in (await resp.json())["customers"])
    async with session.get(url, params={"page_info": "not-a-token"}) as resp:
        assert resp.status == 400


@pytest.mark.parametrize("limit", ["251", "0", "abc"])
async def test_bad_limit_is_400(sandbox: ShopifySandbox, session: aiohttp.ClientSession, limit: str) -> None:
    async with session.get(
        f"{sandbox.url}/admin/api/{VERSION}/customers.json", params={"limit": limit}
    ) as resp:
        assert resp.status == 400


async def test_ids_fields_and_count(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    ids = all_ids(sandbox)
    wanted = f"{ids[5]},{ids[2]},{ids[9]}"
    async with session.get(
        f"{sandbox.url}/admin/api/{VERSION}/customers.json", params={"ids": wanted, "fields": "id,tags"}
    ) as resp:
        body = await resp.json()
    assert [c["id"] for c in body["customers"]] == [ids[2], ids[5], ids[9]]  # listing order
    assert all(set(c) == {"id", "tags"} for c in body["customers"])
    async with session.get(f"{sandbox.url}/admin/api/{VERSION}/customers/count.json") as resp:
        assert (await resp.json()) == {"count": 120}


async def test_orders_walk_and_status(sandbox: ShopifySandbox, session: aiohttp.ClientSession) -> None:
    store = sandbox.store
    store.scopes.add("read_all_orders")
    every = list(store.order_ids(descending=True))
    records, _ = await walk(
        session,
        f"{sandbox.url}/admin/api/{VERSION}/orders.json",
        {"status": "any", "limit": "13"},
        key="orders",
    )
    assert [o["id"] for o in records] == every
    open_orders, _ = await walk(
        session, f"{sandbox.url}/admin/api/{VERSION}/orders.json", {"limit": "50"}, key="orders"
    )
    assert all(o["closed_at"] is None and o["cancelled_at"] is None for o in open_orders)
    assert len(open_orders) < len(records)
    customer_id = next(i for i in store.customer_ids() if len(store.orders_of(i)) > 1)
    mine, _ = await walk(
        session,
        f"{sandbox.url}/admin/api/{VERSION}/orders.json",
        {"status": "any", "customer_id": str(customer_id)},
        key="orders",
    )
    assert [o["id"] for o in mine] == sorted(store.orders_of(customer_id), reverse=True)
    assert all(o["customer"]["id"] == customer_id for o in mine)


async def test_orders_older_than_60_days_need_read_all_orders(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store
    url = f"{sandbox.url}/admin/api/{VERSION}/orders.json"
    recent, _ = await walk(session, url, {"status": "any", "limit": "250"}, key="orders")
    store.scopes.add("read_all_orders")
    every, _ = await walk(session, url, {"status": "any", "limit": "250"}, key="orders")
    floor = store.now() - 60 * 86400
    assert {o["id"] for o in recent} == {
        o["id"]
        for o in every
        if store.order(o["id"]) and store.order(o["id"]).created_at >= floor  # type: ignore[union-attr]
    }
    assert len(recent) < len(every)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_walk_forward_and_back_with_deletions(session: aiohttp.ClientSession, seed: int) -> None:
    import random

    from sandbox.shopify import Store

    rng = random.Random(seed)
    store = Store(seed=seed, size=rng.randrange(1, 90))
    store.rate_limit.bucket_size = 100_000
    async with ShopifySandbox(store) as running:
        for customer_id in rng.sample(list(store.customer_ids()), k=len(list(store.customer_ids())) // 3):
            await store.delete_customer(customer_id)
        limit = rng.randrange(1, 12)
        url = f"{running.url}/admin/api/{VERSION}/customers.json"
        forward, _ = await walk(session, url, {"limit": str(limit)})
        expected = list(store.customer_ids(descending=True))
        assert [c["id"] for c in forward] == expected
        async with session.get(url, params={"limit": str(limit), "since_id": str(expected[0] - 1)}) as resp:
            page = [c["id"] for c in (await resp.json())["customers"]]
        assert page == expected[:1]
        backward: list[int] = []
        next_url: str | None = None
        async with session.get(url, params={"limit": str(limit)}) as resp:
            link = resp.headers.get("Link", "")
        while 'rel="next"' in link:
            next_url = next(p.split(";")[0].strip()[1:-1] for p in link.split(",") if 'rel="next"' in p)
            async with session.get(next_url) as resp:
                link = resp.headers.get("Link", "")
        # next_url is now the last page; walk previous links down to the first page.
        current = next_url
        while current:
            async with session.get(current) as resp:
                backward = [c["id"] for c in (await resp.json())["customers"]] + backward
                link = resp.headers.get("Link", "")
            current = next(
                (p.split(";")[0].strip()[1:-1] for p in link.split(",") if 'rel="previous"' in p), None
            )
        if next_url is not None:
            assert backward == expected
