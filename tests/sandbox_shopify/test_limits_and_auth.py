"""The Admin API's door: the REST Admin routes are gone (404), 401 without a valid token, 404 for
an unknown version, injected 429s on GraphQL, the request counters, and single records by id."""

from __future__ import annotations

import aiohttp
import pytest

from sandbox.shopify import ShopifySandbox
from sandbox.shopify.__main__ import parser
from sandbox.shopify.gql.shapes import topic_enum
from sandbox.shopify.ratelimit import RateLimitConfig
from tests.sandbox_shopify.conftest import HEADERS, SUBSCRIBE, graphql

VERSION = "2026-10"
GQL = "/admin/api/{version}/graphql.json"
# The REST Admin API the worker once called: gone from the sandbox, as from apps that may only
# use GraphQL. Shopify answers a path it does not serve with 404 {"errors": "Not Found"}.
REST_ROUTES = (
    ("GET", "/admin/api/2024-10/customers.json"),
    ("GET", "/admin/api/2024-10/customers/count.json"),
    ("GET", "/admin/api/2024-10/customers/1000000001.json"),
    ("GET", "/admin/api/2024-10/customers/1000000001/orders.json"),
    ("GET", "/admin/api/2024-10/orders.json"),
    ("GET", "/admin/api/2024-10/orders/count.json"),
    ("GET", "/admin/api/2024-10/products.json"),
    ("GET", "/admin/api/2024-10/products/1.json"),
    ("GET", "/admin/api/2024-10/shop.json"),
    ("GET", "/admin/api/2024-10/webhooks.json"),
    ("POST", "/admin/api/2024-10/webhooks.json"),
    ("PUT", "/admin/api/2024-10/webhooks/1.json"),
    ("DELETE", "/admin/api/2024-10/webhooks/1.json"),
    ("GET", "/admin/oauth/access_scopes.json"),
)


async def test_rest_admin_routes_answer_not_found(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    for method, path in REST_ROUTES:
        async with session.request(method, f"{sandbox.url}{path}", json={}) as resp:
            assert resp.status == 404, (method, path)
            assert await resp.json() == {"errors": "Not Found"}
    counts = sandbox.request_counts()
    assert sum(n for (_, status), n in counts.items() if status == 404) == len(REST_ROUTES)
    assert not any(status == 200 for (_, status) in counts)


async def test_wrong_or_missing_token_is_401(sandbox: ShopifySandbox) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in (GQL.format(version=VERSION), "/admin/api/2024-10/customers.json"):
            for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
                async with anonymous.post(
                    f"{sandbox.url}{path}", json={"query": "{ shop { name } }"}, headers=headers
                ) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["errors"].startswith("[API] Invalid API key or access token")


async def test_injected_429s_and_missing_retry_after(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    cfg = sandbox.store.rate_limit
    cfg.fault_429_rate = 1 / 3
    cfg.retry_after_omit_rate = 0.5
    url = f"{sandbox.url}{GQL.format(version=VERSION)}"
    statuses = []
    omitted = 0
    for _ in range(300):
        async with session.post(url, json={"query": "{ shop { name } }"}) as resp:
            statuses.append(resp.status)
            if resp.status == 429 and "Retry-After" not in resp.headers:
                omitted += 1
    refused = statuses.count(429)
    assert 60 <= refused <= 140
    assert 0 < omitted < refused
    counts = sandbox.request_counts()
    assert counts[("POST /admin/api/{version}/graphql.json", 429)] == refused
    assert counts[("POST /admin/api/{version}/graphql.json", 200)] == 300 - refused


async def test_missing_scope_is_access_denied(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.store.scopes = {"read_customers"}
    answer = await graphql(session, sandbox, "{ orders(first: 1) { nodes { id } } }", version=VERSION)
    assert answer["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert "read_orders" in answer["errors"][0]["message"]
    customers = await graphql(session, sandbox, "{ customers(first: 1) { nodes { id } } }", version=VERSION)
    assert "errors" not in customers and len(customers["data"]["customers"]["nodes"]) == 1
    variables = {"topic": topic_enum("orders/create"), "sub": {"uri": "http://127.0.0.1:1/x"}}
    created = (await graphql(session, sandbox, SUBSCRIBE, variables, VERSION))["data"][
        "webhookSubscriptionCreate"
    ]
    assert created["webhookSubscription"] is None and "read_orders" in created["userErrors"][0]["message"]
    scopes = await graphql(session, sandbox, "{ currentAppInstallation { accessScopes { handle } } }")
    assert scopes["data"]["currentAppInstallation"]["accessScopes"] == [{"handle": "read_customers"}]


@pytest.mark.parametrize("version", ["2019-10", "2020-04", "2020-08", "latest", "2099-01"])
async def test_unknown_versions_are_404(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, version: str
) -> None:
    async with session.post(
        f"{sandbox.url}{GQL.format(version=version)}", json={"query": "{ shop { name } }"}
    ) as resp:
        assert resp.status == 404
        assert await resp.json() == {"errors": "Not Found"}


@pytest.mark.parametrize("version", ["2020-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10"])
async def test_known_versions_answer(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession, version: str
) -> None:
    async with session.post(
        f"{sandbox.url}{GQL.format(version=version)}", json={"query": "{ shop { name } }"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["X-Shopify-API-Version"] == version


async def test_single_records_and_missing_ones(
    sandbox: ShopifySandbox, session: aiohttp.ClientSession
) -> None:
    store = sandbox.store
    product_id = next(iter(store.products))
    customer_id = next(iter(store.customer_ids()))
    query = """query($p: ID!, $c: ID!, $none: ID!) {
      product(id: $p) { legacyResourceId handle featuredMedia { preview { image { url } } } }
      customer(id: $c) { legacyResourceId }
      missing: customer(id: $none) { id }
      shop { myshopifyDomain }
    }"""
    variables = {
        "p": f"gid://shopify/Product/{product_id}",
        "c": f"gid://shopify/Customer/{customer_id}",
        "none": "gid://shopify/Customer/1",
    }
    data = (await graphql(session, sandbox, query, variables, VERSION))["data"]
    assert data["product"]["legacyResourceId"] == str(product_id) and data["product"]["handle"]
    assert data["product"]["featuredMedia"]["preview"]["image"]["url"].startswith("https://")
    assert data["customer"]["legacyResourceId"] == str(customer_id)
    assert data["missing"] is None
    assert data["shop"]["myshopifyDomain"] == "demo-store.myshopify.com"
    await store.delete_customer(customer_id)
    gone = (await graphql(session, sandbox, query, variables, VERSION))["data"]
    assert gone["customer"] is None
    assert HEADERS["X-Shopify-Access-Token"] == store.access_token


def test_the_command_line_takes_the_stores_plan() -> None:
    args = parser().parse_args(["--plan", "plus"])
    limits = RateLimitConfig(plan=args.plan)
    assert limits.graphql_limits() == (20_000.0, 1000.0)  # 20 s of Plus's 1,000 points/s
    assert parser().parse_args([]).plan == "standard"
    with pytest.raises(SystemExit):
        parser().parse_args(["--plan", "gold"])
