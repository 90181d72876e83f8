"""The sandbox GraphQL Admin API over real HTTP: pages, cost, the bucket, errors, protected data, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.graphql import BULK
from tests.sandbox_shopify.conftest import HEADERS

VERSION = "2026-10"
PAGE = """query($after: String, $q: String, $sort: CustomerSortKeys) {
  customers(first: 7, after: $after, query: $q, sortKey: $sort) {
    edges { cursor node { id legacyResourceId updatedAt } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(self, session: aiohttp.ClientSession, sandbox: ShopifySandbox) -> None:
        self.session, self.sandbox = session, sandbox

    async def post(self, query: str, variables: dict[str, Any] | None = None, version: str = VERSION) -> Any:
        url = f"{self.sandbox.url}/admin/api/{version}/graphql.json"
        async with self.session.post(url, json={"query": query, "variables": variables or {}}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def config(self, body: dict[str, Any]) -> None:
        async with self.session.post(f"{self.sandbox.url}/_sandbox/config", json=body) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(clock: Clock) -> AsyncIterator[Api]:
    store = Store(seed=3, size=40, monotonic=clock)
    async with ShopifySandbox(store) as sandbox, aiohttp.ClientSession(headers=HEADERS) as session:
        yield Api(session, sandbox)


async def test_customer_pages_follow_cursors_and_the_updated_at_filter(api: Api) -> None:
    store = api.sandbox.store
    since = sorted(store.updated_at(i) for i in store.customer_ids())[15]
    stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = [i for i in store.customer_ids() if store.updated_at(i) > since]
    for sort in ("ID", "UPDATED_AT"):
        seen: list[int] = []
        after = None
        while True:
            body = await api.post(PAGE, {"after": after, "q": f"updated_at:>'{stamp}'", "sort": sort})
            page = body["data"]["customers"]
            seen += [int(e["node"]["legacyResourceId"]) for e in page["edges"]]
            assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        if sort == "ID":
            assert seen == expected
        else:
            assert sorted(seen) == expected
            assert [store.updated_at(i) for i in seen] == sorted(store.updated_at(i) for i in seen)


async def test_customer_shape_is_2026_10(api: Api) -> None:
    customer_id = CUSTOMER_BASE + 5
    await api.sandbox.store.change_email(customer_id, "new.address@example.se")
    query = """query($id: ID!) { customer(id: $id) { id legacyResourceId
      defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt }
      defaultPhoneNumber { phoneNumber smsMarketingConsent { state optInLevel updatedAt collectedFrom } } } }"""
    body = await api.post(query, {"id": f"gid://shopify/Customer/{customer_id}"})
    node = body["data"]["customer"]
    assert node["id"] == f"gid://shopify/Customer/{customer_id}" and node["legacyResourceId"] == str(
        customer_id
    )
    assert node["defaultEmailAddress"]["emailAddress"] == "new.address@example.se"
    missing = await api.post(query, {"id": "gid://shopify/Customer/1"})
    assert missing["data"] == {"customer": None}


async def test_cost_requested_actual_and_refund(api: Api) -> None:
    body = await api.post("{ shop { name } }")
    assert body["extensions"]["cost"]["requestedQueryCost"] == 1
    assert body["extensions"]["cost"]["actualQueryCost"] == 1
    # A connection costs 2 plus first x item; the actual cost counts the 40 customers returned.
    body = await api.post(
        "{ customers(first: 250) { edges { cursor node { id defaultAddress { city } } } } }"
    )
    cost = body["extensions"]["cost"]
    with_address = sum(1 for e in body["data"]["customers"]["edges"] if e["node"]["defaultAddress"])
    assert cost["requestedQueryCost"] == 2 + 250 * 2
    assert cost["actualQueryCost"] == 2 + 40 + with_address
    status = cost["throttleStatus"]
    assert status == {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 2000 - 1 - cost["actualQueryCost"],
        "restoreRate": 100.0,
    }
    mutation = 'mutation { webhookSubscriptionDelete(id: "gid://shopify/WebhookSubscription/1") { userErrors { message } } }'
    assert (await api.post(mutation))["extensions"]["cost"]["requestedQueryCost"] == 10


async def test_throttled_until_the_points_come_back(api: Api, clock: Clock) -> None:
    await api.config({"rate_limit": {"graphql_maximum": 30}})
    query = "{ customers(first: 10) { nodes { id } } }"  # 12 points, all 10 returned
    assert "errors" not in await api.post(query)
    assert "errors" not in await api.post(query)
    throttled = await api.post(query)  # 6 left
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in throttled
    cost = throttled["extensions"]["cost"]
    assert cost["actualQueryCost"] is None and cost["throttleStatus"]["currentlyAvailable"] == 6
    clock.now += 0.1  # 100 points/s: 10 more
    assert "errors" not in await api.post(query)


async def test_plan_sets_the_restore_rate(api: Api) -> None:
    for plan, rate in (("advanced", 200.0), ("plus", 1000.0), ("enterprise", 2000.0)):
        await api.config({"rate_limit": {"plan": plan}})
        status = (await api.post("{ shop { plan { shopifyPlus } } }"))["extensions"]["cost"]["throttleStatus"]
        assert status["restoreRate"] == rate and status["maximumAvailable"] == rate * 20


async def test_single_query_over_1000_is_refused(api: Api) -> None:
    body = await api.post("{ customers(first: 250) { nodes { orders(first: 250) { nodes { id } } } } }")
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert "exceeds the single query max cost limit (1000)" in body["errors"][0]["message"]
    assert "data" not in body


async def test_unknown_field_is_an_error_without_data(api: Api) -> None:
    body = await api.post("{ shop { name nonsense } }")
    assert body["errors"][0]["extensions"] == {
        "code": "undefinedField",
        "typeName": "Shop",
        "fieldName": "nonsense",
    }
    assert "data" not in body


async def test_protected_customer_data_level_1_gives_partial_data(api: Api) -> None:
    await api.config({"graphql": {"protected_customer_data": 1}})
    body = await api.post(
        "{ customers(first: 2) { nodes { id tags defaultEmailAddress { emailAddress } firstName } } }"
    )
    nodes = body["data"]["customers"]["nodes"]
    assert [n["defaultEmailAddress"] for n in nodes] == [None, None] and all(n["id"] for n in nodes)
    assert {e["extensions"]["code"] for e in body["errors"]} == {"ACCESS_DENIED"}
    assert "This app is not approved to use the defaultEmailAddress field" in body["errors"][0]["message"]
    assert {tuple(e["path"][-1:]) for e in body["errors"]} == {("defaultEmailAddress",), ("firstName",)}
    await api.config({"graphql": {"protected_customer_data": 0}})
    body = await api.post("{ customers(first: 2) { nodes { id } } }")
    assert (
        body["data"] is None and "not approved to access the Customer object" in body["errors"][0]["message"]
    )


async def test_missing_scope_is_access_denied(api: Api) -> None:
    await api.config({"scopes": ["read_customers"]})
    body = await api.post('{ shop { name } order(id: "gid://shopify/Order/5000000000000") { id } }')
    assert body["data"] == {"shop": {"name": "Demo Store"}, "order": None}
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert "`read_orders` access scope" in body["errors"][0]["message"]


async def test_webhook_subscriptions_create_list_delete(api: Api) -> None:
    create = """mutation($uri: String!) { webhookSubscriptionCreate(topic: CUSTOMERS_UPDATE,
      webhookSubscription: {uri: $uri}) { webhookSubscription { id topic uri apiVersion { handle } } userErrors { field message } } }"""
    made = (await api.post(create, {"uri": "https://example.test/hook"}))["data"]["webhookSubscriptionCreate"]
    assert made["userErrors"] == [] and made["webhookSubscription"]["apiVersion"]["handle"] == VERSION
    again = (await api.post(create, {"uri": "https://example.test/hook"}))["data"][
        "webhookSubscriptionCreate"
    ]
    assert again["webhookSubscription"] is None
    assert again["userErrors"] == [
        {"field": ["webhookSubscription", "uri"], "message": "Address for this topic has already been taken"}
    ]
    bad = (await api.post(create, {"uri": "ftp://example.test"}))["data"]["webhookSubscriptionCreate"]
    assert bad["userErrors"][0]["message"] == "Address is invalid"
    listed = await api.post(
        "{ webhookSubscriptions(first: 10, topics: [CUSTOMERS_UPDATE]) { nodes { id uri } } }"
    )
    assert listed["data"]["webhookSubscriptions"]["nodes"] == [
        {"id": made["webhookSubscription"]["id"], "uri": "https://example.test/hook"}
    ]
    delete = "mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }"
    gone = (await api.post(delete, {"id": made["webhookSubscription"]["id"]}))["data"][
        "webhookSubscriptionDelete"
    ]
    assert gone == {"deletedWebhookSubscriptionId": made["webhookSubscription"]["id"], "userErrors": []}
    twice = (await api.post(delete, {"id": made["webhookSubscription"]["id"]}))["data"][
        "webhookSubscriptionDelete"
    ]
    assert twice["deletedWebhookSubscriptionId"] is None and twice["userErrors"][0]["field"] == ["id"]
    await api.config({"graphql": {"protected_customer_data": 0}})
    refused = (await api.post(create, {"uri": "https://example.test/other"}))["data"][
        "webhookSubscriptionCreate"
    ]
    assert "protected customer data" in refused["userErrors"][0]["message"]
    assert api.sandbox.store.subscriptions == {}


async def test_scopes_and_shop(api: Api) -> None:
    body = await api.post(
        "{ currentAppInstallation { accessScopes { handle } } shop { myshopifyDomain currencyCode } }"
    )
    handles = [s["handle"] for s in body["data"]["currentAppInstallation"]["accessScopes"]]
    assert handles == ["read_customers", "read_orders", "read_products"]
    assert body["data"]["shop"] == {"myshopifyDomain": "demo-store.myshopify.com", "currencyCode": "SEK"}


async def test_orders_with_line_items_and_products(api: Api) -> None:
    store = api.sandbox.store
    order = await store.place_order(CUSTOMER_BASE + 3)
    query = """query($id: ID!) { customer(id: $id) { orders(first: 5, reverse: true) { nodes { id name
      totalPriceSet { shopMoney { amount currencyCode } }
      lineItems(first: 10) { nodes { title quantity product { legacyResourceId title } } } } } } }"""
    body = await api.post(query, {"id": f"gid://shopify/Customer/{CUSTOMER_BASE + 3}"})
    newest = body["data"]["customer"]["orders"]["nodes"][0]
    assert newest["id"] == f"gid://shopify/Order/{order.id}" and newest["name"] == order.name
    assert [(i["title"], i["quantity"]) for i in newest["lineItems"]["nodes"]] == [
        (li.title, li.quantity) for li in order.line_items
    ]
    assert newest["lineItems"]["nodes"][0]["product"]["legacyResourceId"] == str(
        order.line_items[0].product_id
    )


async def test_faults_apply_to_graphql(api: Api) -> None:
    url = f"{api.sandbox.url}/admin/api/{VERSION}/graphql.json"
    await api.config({"rate_limit": {"fault_5xx_rate": 1.0}})
    async with api.session.post(url, json={"query": "{ shop { name } }"}) as resp:
        assert resp.status == 503
    await api.config({"rate_limit": {"fault_5xx_rate": 0.0, "fault_429_rate": 1.0}})
    async with api.session.post(url, json={"query": "{ shop { name } }"}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "2.0"


RUN = "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id status } userErrors { field message code } } }"
EXPORT = "{ customers { edges { node { id defaultEmailAddress { emailAddress } } } } }"


@pytest.mark.parametrize(("version", "limit"), [("2025-10", 1), ("2026-01", 5)])
async def test_bulk_operations_at_once_by_version(api: Api, version: str, limit: int) -> None:
    api.sandbox.app[BULK].objects_per_second = 0.001  # they stay RUNNING
    answers = [
        (await api.post(RUN, {"q": EXPORT}, version))["data"]["bulkOperationRunQuery"]
        for _ in range(limit + 1)
    ]
    assert all(a["userErrors"] == [] for a in answers[:limit])
    assert answers[limit]["bulkOperation"] is None
    assert answers[limit]["userErrors"][0]["code"] == (
        "OPERATION_IN_PROGRESS" if limit == 1 else "LIMIT_REACHED"
    )


async def test_bulk_query_is_validated(api: Api) -> None:
    answer = (await api.post(RUN, {"q": "{ customers { edges { node { id nope } } } }"}))["data"][
        "bulkOperationRunQuery"
    ]
    assert answer["bulkOperation"] is None and answer["userErrors"][0]["code"] == "INVALID"
    assert "nope" in answer["userErrors"][0]["message"]


async def test_bulk_with_protected_fields_fails_without_level_2(api: Api, clock: Clock) -> None:
    await api.config({"graphql": {"protected_customer_data": 1}})
    started = (await api.post(RUN, {"q": EXPORT}))["data"]["bulkOperationRunQuery"]["bulkOperation"]
    clock.now += 1
    poll = "query($id: ID!) { node(id: $id) { ... on BulkOperation { status errorCode url } } }"
    node = (await api.post(poll, {"id": started["id"]}))["data"]["node"]
    assert node == {"status": "FAILED", "errorCode": "ACCESS_DENIED", "url": None}
