"""The GraphQL Shopify client against mocked HTTP (aioresponses) and the real Redis limiter:
REST shapes out, cost learning, THROTTLED, partial data, userErrors, protected data, 401 re-mint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aioresponses import aioresponses
from redis.asyncio import Redis

from core.keys import Keys
from tests.clients.conftest import calls, make_shop
from worker.errors import AuthError, RateLimitedError, TransientApiError
from worker.ratelimit import RateLimiter
from worker.retry import NO_RETRY, RetryPolicy
from worker.shopify_bulk import BulkOperationBusyError
from worker.shopify_client import ShopifyClient
from worker.shopify_cost import estimate_cost, page_size
from worker.shopify_errors import (
    AccessDeniedError,
    CostTooHighError,
    GraphQLError,
    ProtectedDataError,
    UserErrorsError,
)
from worker.shopify_queries import CUSTOMERS_QUERY, ORDERS_QUERY, customer_documents
from worker.shopify_shapes import rest_customer

ADMIN = "http://shop.test"
URL = f"{ADMIN}/admin/api/2026-10/graphql.json"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0, budget_s=30.0)


def cost(
    requested: int = 10, actual: int = 5, available: float = 1990.0, maximum: float = 2000.0
) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": maximum,
                "currentlyAvailable": available,
                "restoreRate": 100.0,
            },
        }
    }


CUSTOMER_NODE = {
    "id": "gid://shopify/Customer/5",
    "legacyResourceId": "5",
    "firstName": "Ada",
    "lastName": "L",
    "note": None,
    "state": "ENABLED",
    "tags": ["vip", "b"],
    "verifiedEmail": True,
    "taxExempt": False,
    "locale": "en",
    "numberOfOrders": "3",
    "createdAt": "2024-01-01T00:00:00Z",
    "updatedAt": "2024-02-01T00:00:00Z",
    "amountSpent": {"amount": "12.50", "currencyCode": "SEK"},
    "defaultEmailAddress": {
        "emailAddress": "ada@example.com",
        "marketingState": "SUBSCRIBED",
        "marketingOptInLevel": "SINGLE_OPT_IN",
        "marketingUpdatedAt": "2024-01-02T00:00:00Z",
    },
    "defaultPhoneNumber": {
        "phoneNumber": "+46700000000",
        "smsMarketingConsent": {
            "state": "NOT_SUBSCRIBED",
            "optInLevel": "UNKNOWN",
            "updatedAt": None,
            "collectedFrom": "SHOPIFY",
        },
    },
    "defaultAddress": {"city": "Lund", "countryCodeV2": "SE", "provinceCode": None, "firstName": "Ada"},
}


@pytest.fixture
async def client(redis: Redis, keys: Keys, limiter: RateLimiter) -> AsyncIterator[ShopifyClient]:
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY) as c:
        yield c


def sent(http: aioresponses) -> list[dict[str, Any]]:
    return [orjson.loads(kw["data"]) for _, kw in calls(http, "POST", URL)]


async def test_customer_by_id_in_rest_shape(http: aioresponses, client: ShopifyClient) -> None:
    http.post(URL, payload={"data": {"customer": CUSTOMER_NODE}, "extensions": cost()})
    customer = await client.get_customer(5)
    assert customer is not None
    assert customer["id"] == 5
    assert customer["email"] == "ada@example.com"
    assert customer["tags"] == "vip, b"
    assert customer["state"] == "enabled"
    assert customer["orders_count"] == 3
    assert customer["total_spent"] == "12.50" and customer["currency"] == "SEK"
    assert customer["email_marketing_consent"] == {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2024-01-02T00:00:00Z",
    }
    assert customer["sms_marketing_consent"]["state"] == "not_subscribed"
    assert customer["default_address"] == {
        "city": "Lund",
        "country_code": "SE",
        "province_code": None,
        "first_name": "Ada",
    }
    [body] = sent(http)
    assert body["variables"] == {"id": "gid://shopify/Customer/5"}
    assert "defaultEmailAddress" in body["query"] and "emailMarketingConsent" not in body["query"]
    [(_, kw)] = calls(http, "POST", URL)
    assert kw["headers"]["X-Shopify-Access-Token"] == "shpat_test"


async def test_missing_customer_is_none(http: aioresponses, client: ShopifyClient) -> None:
    http.post(URL, payload={"data": {"customer": None}, "extensions": cost()})
    assert await client.get_customer(6) is None


async def test_pages_follow_the_cursor_with_a_size_from_the_cost(
    http: aioresponses, client: ShopifyClient
) -> None:
    def page(ids: list[int], more: bool, end: str) -> dict[str, Any]:
        nodes = [
            {**CUSTOMER_NODE, "id": f"gid://shopify/Customer/{i}", "legacyResourceId": str(i)} for i in ids
        ]
        info = {"hasNextPage": more, "endCursor": end}
        return {"data": {"customers": {"pageInfo": info, "nodes": nodes}}, "extensions": cost()}

    http.post(URL, payload=page([1, 2], True, "c1"))
    http.post(URL, payload=page([3], False, "c2"))
    seen = [
        [c["id"] for c in p] async for p in client.iter_customer_pages(updated_at_min="2024-01-01T00:00:00Z")
    ]
    assert seen == [[1, 2], [3]]
    first, second = sent(http)
    assert first["variables"]["query"] == "updated_at:>='2024-01-01T00:00:00Z'"
    assert first["variables"]["after"] is None and second["variables"]["after"] == "c1"
    per_customer = estimate_cost(CUSTOMERS_QUERY, {"first": 2}) - estimate_cost(CUSTOMERS_QUERY, {"first": 1})
    assert per_customer == 6  # Customer and five objects inside it
    assert first["variables"]["first"] == page_size(per_customer) == 166


async def test_cost_estimate_follows_shopify_rules() -> None:
    assert estimate_cost("query { shop { name } }") == 1
    assert estimate_cost("mutation { a { b } }") == 10
    doc = "query { products(first: 10) { edges { node { title variants(first: 5) { edges { node { price } } } } } } }"
    assert estimate_cost(doc) == 2 + 10 * (1 + 2 + 5 * 1)
    # An order: itself, its customer, five money bags (2 each), its lines' connection with 10
    # lines of 1 + product + variant + three money bags.
    assert estimate_cost(ORDERS_QUERY, {"first": 1, "lines": 10}) == 2 + (
        1 + 1 + 5 * 2 + 2 + 10 * (3 + 3 * 2)
    )


async def test_the_bucket_is_learned_from_the_answers(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    http.post(
        URL,
        payload={
            "data": {"shop": {"id": "gid://shopify/Shop/1", "name": "S"}},
            "extensions": cost(maximum=20000.0),
        },
    )
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY) as first:
        assert (await first.shop())["name"] == "S"
        assert first.cost.maximum == 20000.0
    # Another process (a new client) starts from what the pool learned.
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY) as second:
        await second.cost.load()
        assert (second.cost.maximum, second.cost.restore_per_s) == (20000.0, 100.0)


async def test_throttled_waits_and_retries(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": cost(available=999.5, maximum=1000.0),
    }
    http.post(URL, payload=throttled)
    http.post(
        URL,
        payload={
            "data": {"currentAppInstallation": {"accessScopes": [{"handle": "read_customers"}]}},
            "extensions": cost(),
        },
    )
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=FAST) as c:
        assert await c.access_scopes() == ["read_customers"]
    assert len(sent(http)) == 2


async def test_throttled_past_the_budget_is_transient(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": cost(available=0),
        },
    )
    with pytest.raises(RateLimitedError) as raised:
        await client.access_scopes()
    assert raised.value.retry_after is not None and raised.value.retry_after > 0


async def test_partial_data_with_errors_is_never_used(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={
            "data": {"customer": {**CUSTOMER_NODE, "note": None}},
            "errors": [
                {
                    "message": "Field 'nickname' doesn't exist on type 'Customer'",
                    "path": ["customer", "nickname"],
                    "extensions": {"code": "undefinedField"},
                }
            ],
            "extensions": cost(),
        },
    )
    with pytest.raises(GraphQLError) as raised:
        await client.get_customer(5)
    assert "customer.nickname" in str(raised.value)


async def test_internal_errors_are_transient(http: aioresponses, client: ShopifyClient) -> None:
    http.post(URL, payload={"errors": [{"message": "oops", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})
    with pytest.raises(TransientApiError):
        await client.shop()


async def test_protected_customer_data_refused(http: aioresponses, client: ShopifyClient) -> None:
    node = {**CUSTOMER_NODE, "defaultEmailAddress": None, "firstName": None}
    http.post(
        URL,
        payload={
            "data": {"customer": node},
            "errors": [
                {
                    "message": "This app is not approved to access the Customer object. See https://shopify.dev/docs/apps/launch/protected-customer-data",
                    "path": ["customer", "defaultEmailAddress"],
                    "extensions": {"code": "ACCESS_DENIED"},
                },
                {
                    "message": "not approved",
                    "path": ["customer", "firstName"],
                    "extensions": {"code": "ACCESS_DENIED"},
                },
            ],
            "extensions": cost(),
        },
    )
    with pytest.raises(ProtectedDataError) as raised:
        await client.get_customer(5)
    assert raised.value.fields == ("defaultEmailAddress", "firstName")
    assert "protected customer data" in str(raised.value)


async def test_missing_scope_is_access_denied(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={
            "data": None,
            "errors": [
                {
                    "message": "Access denied for orders field.",
                    "path": ["orders"],
                    "extensions": {"code": "ACCESS_DENIED"},
                }
            ],
        },
    )
    with pytest.raises(AccessDeniedError) as raised:
        _ = [p async for p in client.iter_order_pages()]
    assert not isinstance(raised.value, ProtectedDataError)


async def test_user_errors_name_the_field(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={
            "data": {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": None,
                    "userErrors": [
                        {"field": ["webhookSubscription", "callbackUrl"], "message": "Address is invalid"}
                    ],
                }
            },
            "extensions": cost(),
        },
    )
    with pytest.raises(UserErrorsError) as raised:
        await client.create_webhook("customers/update", "not a url")
    assert "webhookSubscription.callbackUrl: Address is invalid" in str(raised.value)
    [body] = sent(http)
    assert body["variables"] == {
        "topic": "CUSTOMERS_UPDATE",
        "subscription": {"uri": "not a url", "format": "JSON"},
    }


async def test_webhooks_in_rest_shape_and_idempotent_delete(
    http: aioresponses, client: ShopifyClient
) -> None:
    node = {
        "id": "gid://shopify/WebhookSubscription/9",
        "legacyResourceId": "9",
        "topic": "CUSTOMER_TAGS_ADDED",
        "uri": "https://h.example/webhooks/shopify",
        "format": "JSON",
        "apiVersion": {"handle": "2026-10"},
    }
    http.post(
        URL,
        payload={
            "data": {
                "webhookSubscriptions": {
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                    "nodes": [node],
                }
            },
            "extensions": cost(),
        },
    )
    http.post(
        URL,
        payload={
            "data": {
                "webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": node["id"], "userErrors": []}
            }
        },
    )
    http.post(
        URL,
        payload={
            "data": {
                "webhookSubscriptionDelete": {
                    "deletedWebhookSubscriptionId": None,
                    "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}],
                }
            }
        },
    )
    [hook] = await client.webhooks()
    assert (hook["id"], hook["topic"], hook["address"]) == (
        9,
        "customer.tags_added",
        "https://h.example/webhooks/shopify",
    )
    assert await client.delete_webhook(9) is True
    assert await client.delete_webhook(9) is False


async def test_a_401_mints_a_new_token_once(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    class Tokens:
        def __init__(self) -> None:
            self.current = "old"
            self.invalidated: list[str] = []

        async def token(self) -> str:
            return self.current

        async def invalidate(self, token: str) -> None:
            self.invalidated.append(token)
            self.current = "new"

    tokens = Tokens()
    http.post(URL, status=401, payload={"errors": "[API] Invalid API key or access token"})
    http.post(
        URL, payload={"data": {"shop": {"id": "gid://shopify/Shop/1", "name": "S"}}, "extensions": cost()}
    )
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY, tokens=tokens) as c:
        assert (await c.shop())["name"] == "S"
    assert tokens.invalidated == ["old"]
    assert [kw["headers"]["X-Shopify-Access-Token"] for _, kw in calls(http, "POST", URL)] == ["old", "new"]

    http.post(URL, status=401, payload={"errors": "bad"})
    http.post(URL, status=401, payload={"errors": "bad"})
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY, tokens=tokens) as c:
        with pytest.raises(AuthError):
            await c.shop()


async def test_a_401_with_a_static_token_is_not_retried(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    """A static token cannot be renewed: one POST, then the AuthError (no second try with it)."""
    http.post(URL, status=401, payload={"errors": "[API] Invalid API key or access token"})
    http.post(URL, status=401, payload={"errors": "[API] Invalid API key or access token"})
    shop = make_shop(ADMIN)
    async with ShopifyClient(shop, redis, limiter, keys, retry=NO_RETRY) as c:
        with pytest.raises(AuthError):
            await c.shop()
    sent = [kw["headers"]["X-Shopify-Access-Token"] for _, kw in calls(http, "POST", URL)]
    assert sent == [shop.access_token]


async def test_a_query_above_the_maximum_is_refused_before_sending(
    http: aioresponses, client: ShopifyClient
) -> None:
    with pytest.raises(CostTooHighError):
        await client.graphql(
            "query { customers(first: 250) { nodes { orders(first: 250) { nodes { id } } } } }"
        )
    assert sent(http) == []


async def test_max_cost_exceeded_halves_the_page(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={"errors": [{"message": "Query cost is 1200", "extensions": {"code": "MAX_COST_EXCEEDED"}}]},
    )
    http.post(
        URL,
        payload={
            "data": {"customers": {"pageInfo": {"hasNextPage": False}, "nodes": []}},
            "extensions": cost(),
        },
    )
    page, cursor = await client.customer_page(None)
    assert (page, cursor) == ([], None)
    first, second = sent(http)
    assert second["variables"]["first"] == first["variables"]["first"] // 2


async def test_bulk_busy_is_transient(http: aioresponses, client: ShopifyClient) -> None:
    http.post(
        URL,
        payload={
            "data": {
                "bulkOperationRunQuery": {
                    "bulkOperation": None,
                    "userErrors": [
                        {
                            "field": None,
                            "message": "A bulk query operation for this app and shop is already in progress",
                            "code": "OPERATION_IN_PROGRESS",
                        }
                    ],
                }
            }
        },
    )
    with pytest.raises(BulkOperationBusyError) as raised:
        await client.run_bulk_customer_export()
    assert "at most 5 at once" in str(raised.value)


def test_sms_never_subscribed_is_rests_not_subscribed() -> None:
    phone = {"phoneNumber": "+4670", "smsMarketingConsent": {"state": "NEVER_SUBSCRIBED", "optInLevel": None}}
    customer = rest_customer({**CUSTOMER_NODE, "defaultPhoneNumber": phone})
    assert customer["sms_marketing_consent"]["state"] == "not_subscribed"


def test_versions_pick_their_documents() -> None:
    assert "smsMarketingConsent" in customer_documents("2026-10").customer
    legacy = customer_documents("2026-04")
    assert "smsMarketingConsent" not in legacy.customer and "marketingState" in legacy.customers
