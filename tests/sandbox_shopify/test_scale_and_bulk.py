"""A million-customer store stays lazy through GraphQL reads; the bulk export returns every customer once."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import aiohttp
import orjson

from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.data import CUSTOMER_BASE
from tests.sandbox_shopify.conftest import VERSION

FIELDS = (
    "id legacyResourceId firstName lastName tags state numberOfOrders amountSpent { amount currencyCode } "
    "createdAt updatedAt defaultAddress { city countryCodeV2 } "
    "defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt } "
    "defaultPhoneNumber { phoneNumber smsMarketingConsent { state optInLevel updatedAt collectedFrom } }"
)
RUN = (
    'mutation { bulkOperationRunQuery(query: """{ customers { edges { node { '
    + FIELDS
    + ' } } } }""") { bulkOperation { id status } userErrors { field message } } }'
)
POLL = "query { currentBulkOperation { id status errorCode objectCount url } }"


PAGE = """query($q: String, $reverse: Boolean) {
  customers(first: 250, query: $q, sortKey: ID, reverse: $reverse) {
    nodes { legacyResourceId } pageInfo { hasNextPage }
  }
}"""


async def test_million_customers_without_materialising(session: aiohttp.ClientSession) -> None:
    tracemalloc.start()
    try:
        store = Store(seed=9, size=1_000_000)
        store.rate_limit.graphql_maximum = 100_000
        async with ShopifySandbox(store) as running:
            url = f"{running.url}/admin/api/{VERSION}/graphql.json"
            newest = await graphql(session, url, PAGE, {"reverse": True})
            since = CUSTOMER_BASE + 999_900
            last = await graphql(session, url, PAGE, {"q": f"id:>{since}"})
            assert last["data"]["customers"]["pageInfo"]["hasNextPage"] is False
            count = await graphql(session, url, "{ customersCount(limit: null) { count precision } }")
            assert count["data"]["customersCount"] == {"count": 1_000_000, "precision": "EXACT"}
            one = await graphql(
                session,
                url,
                f'{{ customer(id: "gid://shopify/Customer/{CUSTOMER_BASE + 654_321}") {{ id }} }}',
            )
            assert one["data"]["customer"] is not None
            await store.update_customer(CUSTOMER_BASE + 500_000, first_name="Łukasz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    top = CUSTOMER_BASE + 999_999
    first_ids = [int(n["legacyResourceId"]) for n in newest["data"]["customers"]["nodes"]]
    last_ids = [int(n["legacyResourceId"]) for n in last["data"]["customers"]["nodes"]]
    assert first_ids == list(range(top, top - 250, -1))  # newest first
    assert last_ids == list(range(since + 1, CUSTOMER_BASE + 1_000_000))
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"


async def graphql(
    session: aiohttp.ClientSession, url: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with session.post(url, json={"query": query, "variables": variables or {}}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def test_bulk_export_returns_every_customer_once(session: aiohttp.ClientSession) -> None:
    store = Store(seed=4, size=2_345)
    async with ShopifySandbox(store) as running:
        await store.delete_customer(CUSTOMER_BASE + 10)
        created = await store.create_customer(email="bulk@example.se", tags=["vip", "newsletter"])
        url = f"{running.url}/admin/api/{VERSION}/graphql.json"
        started = await graphql(session, url, RUN)
        op = started["data"]["bulkOperationRunQuery"]
        assert op["userErrors"] == [] and op["bulkOperation"]["status"] == "CREATED"
        cost = started["extensions"]["cost"]
        assert (
            cost["throttleStatus"]["maximumAvailable"] == 2000
            and cost["throttleStatus"]["restoreRate"] == 100
        )
        async with asyncio.timeout(30):
            while True:
                current = (await graphql(session, url, POLL))["data"]["currentBulkOperation"]
                if current["status"] == "COMPLETED":
                    break
                assert current["status"] in ("CREATED", "RUNNING")
                await asyncio.sleep(0.01)
        assert current["objectCount"] == str(store.customer_count())
        async with aiohttp.ClientSession() as anonymous, anonymous.get(current["url"]) as resp:
            assert resp.status == 200
            lines = (await resp.read()).splitlines()
    nodes = [orjson.loads(line) for line in lines]
    ids = [int(n["id"].rsplit("/", 1)[1]) for n in nodes]
    assert ids == list(store.customer_ids())
    assert len(ids) == len(set(ids)) == 2_345
    mine = next(n for n in nodes if (n["defaultEmailAddress"] or {}).get("emailAddress") == "bulk@example.se")
    assert mine["tags"] == ["vip", "newsletter"] and mine["id"] == f"gid://shopify/Customer/{created.id}"
    assert mine["legacyResourceId"] == str(created.id)
    # Exactly the selected fields, in the query's order (as Shopify writes the JSONL).
    assert list(nodes[0]) == [
        "id", "legacyResourceId", "firstName", "lastName", "tags", "state", "numberOfOrders", "amountSpent",
        "createdAt", "updatedAt", "defaultAddress", "defaultEmailAddress", "defaultPhoneNumber",
    ]  # fmt: skip
    states = {n["defaultEmailAddress"]["marketingState"] for n in nodes if n["defaultEmailAddress"]}
    assert "SUBSCRIBED" in states and "NOT_SUBSCRIBED" in states
    sms = {n["defaultPhoneNumber"]["smsMarketingConsent"]["state"] for n in nodes if n["defaultPhoneNumber"]}
    assert "SUBSCRIBED" in sms and "NEVER_SUBSCRIBED" in sms


async def test_one_bulk_operation_at_a_time(session: aiohttp.ClientSession) -> None:
    store = Store(size=50_000)
    async with ShopifySandbox(store) as running:
        url = f"{running.url}/admin/api/{VERSION}/graphql.json"
        assert (await graphql(session, url, RUN))["data"]["bulkOperationRunQuery"]["userErrors"] == []
        second = (await graphql(session, url, RUN))["data"]["bulkOperationRunQuery"]
        assert second["bulkOperation"] is None  # one at a time before 2026-01
        assert "already in progress" in second["userErrors"][0]["message"]


async def test_graphql_throttles_on_cost(session: aiohttp.ClientSession) -> None:
    store = Store(size=10)
    store.rate_limit.graphql_maximum = 3
    store.rate_limit.graphql_restore_rate = 0.0001
    async with ShopifySandbox(store) as running:
        url = f"{running.url}/admin/api/{VERSION}/graphql.json"
        answers = [await graphql(session, url, "{ shop { name } }") for _ in range(5)]  # 1 point each
        throttled = [a for a in answers if "errors" in a]
        assert len(throttled) == 2
        assert throttled[0]["errors"][0]["extensions"]["code"] == "THROTTLED"


async def test_poll_by_node_id(session: aiohttp.ClientSession) -> None:
    async with ShopifySandbox(Store(size=30)) as running:
        url = f"{running.url}/admin/api/{VERSION}/graphql.json"
        started = (await graphql(session, url, RUN))["data"]["bulkOperationRunQuery"]["bulkOperation"]
        query = "query($id: ID!) { node(id: $id) { ... on BulkOperation { id status url } } }"
        async with asyncio.timeout(30):
            while True:
                async with session.post(
                    url, json={"query": query, "variables": {"id": started["id"]}}
                ) as resp:
                    node = (await resp.json())["data"]["node"]
                if node["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.01)
        assert node["id"] == started["id"] and node["url"].endswith(".jsonl")
