"""The Shopify client against mocked HTTP (aioresponses) and the real Redis limiter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aioresponses import aioresponses
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Limits
from tests.clients.conftest import calls, make_shop
from worker.errors import AuthError, PermanentApiError, RateLimitedError, TransientApiError
from worker.ratelimit import RateLimiter, WaitTooLongError
from worker.retry import NO_RETRY, RetryPolicy
from worker.shopify_client import ShopifyClient, next_page_info, parse_call_limit
from worker.shopify_graphql import BulkOperationBusyError, stream_jsonl

ADMIN = "http://shop.test"
API = f"{ADMIN}/admin/api/2024-10"


@pytest.fixture
async def client(redis: Redis, keys: Keys, limiter: RateLimiter) -> AsyncIterator[ShopifyClient]:
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=NO_RETRY) as c:
        yield c


def link(page_info: str, rel: str = "next") -> str:
    return f'<{API}/customers.json?limit=250&page_info={page_info}>; rel="{rel}"'


def test_parse_call_limit() -> None:
    assert parse_call_limit("32/40") == (32, 40)
    assert parse_call_limit(" 1 / 80 ") == (1, 80)
    assert parse_call_limit(None) is None
    assert parse_call_limit("garbage") is None
    assert parse_call_limit("3/0") is None


def test_next_page_info() -> None:
    header = f"{link('prev1', 'previous')}, {link('next1')}"
    assert next_page_info(header) == "next1"
    assert next_page_info(link("prev1", "previous")) is None
    assert next_page_info(None) is None


async def test_customer_pages_follow_the_link_cursor(http: aioresponses, client: ShopifyClient) -> None:
    pages = re.compile(rf"^{re.escape(API)}/customers\.json.*")
    http.get(pages, payload={"customers": [{"id": 1}, {"id": 2}]}, headers={"Link": link("p2")})
    http.get(
        pages,
        payload={"customers": [{"id": 3}]},
        headers={"Link": f"{link('p1', 'previous')}, {link('p3')}"},
    )
    http.get(pages, payload={"customers": [{"id": 4}]}, headers={"Link": link("p2", "previous")})
    seen = [
        [c["id"] for c in page]
        async for page in client.iter_customer_pages(
            updated_at_min=datetime(2024, 1, 1, tzinfo=UTC), fields=["id", "email"]
        )
    ]
    assert seen == [[1, 2], [3], [4]]
    queries = sorted(
        (dict(url.query) for url, _ in calls(http, "GET", API)), key=lambda q: q.get("page_info", "")
    )
    assert queries == [
        {"limit": "250", "fields": "id,email", "updated_at_min": "2024-01-01T00:00:00+00:00"},
        # with page_info only limit and fields may be passed
        {"limit": "250", "fields": "id,email", "page_info": "p2"},
        {"limit": "250", "fields": "id,email", "page_info": "p3"},
    ]
    headers = [kw["headers"] for _, kw in calls(http, "GET", API)]
    assert all(h["X-Shopify-Access-Token"] == "shpat_test" for h in headers)


async def test_order_pages_pass_filters(http: aioresponses, client: ShopifyClient) -> None:
    http.get(re.compile(rf"^{re.escape(API)}/orders\.json.*"), payload={"orders": [{"id": 9}]})
    pages = [page async for page in client.iter_order_pages(customer_id=42, created_at_min="2024-01-01")]
    assert pages == [[{"id": 9}]]
    [(url, _)] = calls(http, "GET", f"{API}/orders.json")
    assert dict(url.query) == {
        "status": "any",
        "customer_id": "42",
        "created_at_min": "2024-01-01",
        "limit": "250",
    }


async def test_single_resources(http: aioresponses, client: ShopifyClient) -> None:
    http.get(f"{API}/customers/5.json", payload={"customer": {"id": 5}})
    http.get(f"{API}/customers/6.json", status=404, payload={"errors": "Not Found"})
    http.get(f"{API}/customers/count.json", payload={"count": 1234})
    http.get(f"{API}/products/7.json", payload={"product": {"id": 7}})
    http.get(f"{API}/shop.json", payload={"shop": {"id": 1, "domain": "x"}})
    http.get(
        f"{ADMIN}/admin/oauth/access_scopes.json",
        payload={"access_scopes": [{"handle": "read_customers"}, {"handle": "read_orders"}]},
    )
    assert await client.get_customer(5) == {"id": 5}
    assert await client.get_customer(6) is None
    assert await client.count_customers() == 1234
    assert await client.get_product(7) == {"id": 7}
    assert (await client.shop())["id"] == 1
    assert await client.access_scopes() == ["read_customers", "read_orders"]


async def test_webhooks(http: aioresponses, client: ShopifyClient) -> None:
    http.get(f"{API}/webhooks.json?limit=250", payload={"webhooks": [{"id": 1, "topic": "orders/paid"}]})
    http.post(f"{API}/webhooks.json", status=201, payload={"webhook": {"id": 2, "topic": "customers/update"}})
    http.post(
        f"{API}/webhooks.json",
        status=422,
        payload={"errors": {"address": ["for this topic has already been taken"]}},
    )
    http.delete(f"{API}/webhooks/2.json", status=200, payload={})
    http.delete(f"{API}/webhooks/3.json", status=404, payload={"errors": "Not Found"})
    assert await client.webhooks() == [{"id": 1, "topic": "orders/paid"}]
    assert (await client.create_webhook("customers/update", "https://x.test/webhooks/shopify"))["id"] == 2
    with pytest.raises(PermanentApiError, match="already been taken") as raised:
        await client.create_webhook("customers/update", "https://x.test/webhooks/shopify")
    assert raised.value.status == 422
    assert await client.delete_webhook(2) is True
    assert await client.delete_webhook(3) is False


async def test_bad_token_is_an_auth_error(http: aioresponses, client: ShopifyClient) -> None:
    http.get(f"{API}/shop.json", status=401, payload={"errors": "[API] Invalid API key or access token"})
    with pytest.raises(AuthError, match="Invalid API key"):
        await client.shop()


async def test_call_limit_header_pauses_our_bucket(
    http: aioresponses, client: ShopifyClient, limiter: RateLimiter
) -> None:
    # Shopify says 39 of 40 are used (another client of the same store); we used 1 of our 38.
    http.get(f"{API}/shop.json", payload={"shop": {}}, headers={"X-Shopify-Shop-Api-Call-Limit": "39/40"})
    await client.shop()
    # Our margin is 2 (38 of 40): nobody sends until Shopify has leaked back to it, 1 s at 2/s.
    with pytest.raises(WaitTooLongError) as paused:
        await limiter.acquire_bucket(client.bucket, max_wait_s=0)
    assert 0.5 < paused.value.wait_s <= 1.0


async def test_call_limit_header_with_room_changes_nothing(
    http: aioresponses, client: ShopifyClient, limiter: RateLimiter
) -> None:
    http.get(f"{API}/shop.json", payload={"shop": {}}, headers={"X-Shopify-Shop-Api-Call-Limit": "1/40"})
    await client.shop()
    [state] = [s for s in await limiter.state() if s.name == client.bucket.name]
    assert state.level <= 1.01


async def test_429_with_retry_after(http: aioresponses, client: ShopifyClient, limiter: RateLimiter) -> None:
    http.get(f"{API}/shop.json", status=429, payload={"errors": "Exceeded"}, headers={"Retry-After": "4.0"})
    with pytest.raises(RateLimitedError) as raised:
        await client.shop()
    assert raised.value.retry_after == 4.0
    with pytest.raises(WaitTooLongError) as held:
        await limiter.acquire_bucket(client.bucket, max_wait_s=0)
    assert 3 < held.value.wait_s <= 4.0


async def test_429_without_retry_after_uses_a_default(http: aioresponses, client: ShopifyClient) -> None:
    http.get(f"{API}/shop.json", status=429, payload={"errors": "Exceeded"})
    with pytest.raises(RateLimitedError) as raised:
        await client.shop()
    assert raised.value.retry_after == 2.0


async def test_429_is_retried_after_the_wait(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    http.get(f"{API}/shop.json", status=429, payload={"errors": "Exceeded"}, headers={"Retry-After": "0.2"})
    http.get(f"{API}/shop.json", payload={"shop": {"id": 1}})
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.01, budget_s=5)
    async with ShopifyClient(make_shop(ADMIN), redis, limiter, keys, retry=retry) as client:
        assert (await client.shop())["id"] == 1


async def test_server_errors_are_transient(http: aioresponses, client: ShopifyClient) -> None:
    http.get(f"{API}/shop.json", status=503, body="<html>down</html>", content_type="text/html")
    with pytest.raises(TransientApiError) as raised:
        await client.shop()
    assert raised.value.detail == "<html>down</html>"


async def test_configured_limits_shape_the_bucket(redis: Redis, keys: Keys, limiter: RateLimiter) -> None:
    plus = make_shop(ADMIN, Limits(shopify_bucket_size=400, shopify_leak_per_s=20, safety=0.9))
    async with ShopifyClient(plus, redis, limiter, keys) as client:
        assert client.bucket.burst == 360
        assert client.bucket.rate_per_s == pytest.approx(18)


# --- GraphQL bulk ------------------------------------------------------------------------------

GQL = f"{API}/graphql.json"


def gql_ok(data: dict[str, Any], available: int = 990) -> dict[str, Any]:
    status = {"maximumAvailable": 1000, "currentlyAvailable": available, "restoreRate": 50}
    return {"data": data, "extensions": {"cost": {"requestedQueryCost": 1, "throttleStatus": status}}}


async def test_bulk_export_run_poll_and_stream(http: aioresponses, client: ShopifyClient) -> None:
    op = "gid://shopify/BulkOperation/1"
    http.post(
        GQL,
        payload=gql_ok(
            {"bulkOperationRunQuery": {"bulkOperation": {"id": op, "status": "CREATED"}, "userErrors": []}}
        ),
    )
    http.post(GQL, payload=gql_ok({"node": {"id": op, "status": "RUNNING", "objectCount": "10"}}))
    http.post(
        GQL,
        payload=gql_ok(
            {"node": {"id": op, "status": "COMPLETED", "url": "https://storage.test/export.jsonl"}}
        ),
    )
    lines = [{"id": "gid://shopify/Customer/1", "note": "n" * 1000}, {"id": "gid://shopify/Customer/2"}]
    http.get("https://storage.test/export.jsonl", body=b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    got = [line async for line in client.iter_bulk_customers(poll_s=0.01)]
    assert got == lines
    [(_, download)] = calls(http, "GET", "https://storage.test/")
    assert "X-Shopify-Access-Token" not in (download.get("headers") or {})  # no token to storage
    run = orjson.loads(calls(http, "POST", GQL)[0][1]["data"])
    assert "bulkOperationRunQuery" in run["query"] and "customers" in run["variables"]["query"]


async def test_bulk_export_busy_is_transient(http: aioresponses, client: ShopifyClient) -> None:
    busy = (
        "A bulk query operation for this app and shop is already in progress: gid://shopify/BulkOperation/9."
    )
    http.post(
        GQL,
        payload=gql_ok(
            {
                "bulkOperationRunQuery": {
                    "bulkOperation": None,
                    "userErrors": [{"field": None, "message": busy}],
                }
            }
        ),
    )
    with pytest.raises(BulkOperationBusyError) as raised:
        await client.run_bulk_customer_export()
    assert "already in progress" in raised.value.detail


async def test_graphql_throttled_waits_for_the_points(http: aioresponses, client: ShopifyClient) -> None:
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {
            "cost": {"throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 2, "restoreRate": 50}}
        },
    }
    http.post(GQL, payload=throttled)
    with pytest.raises(RateLimitedError) as raised:
        await client.run_bulk_customer_export()
    assert raised.value.retry_after == 0.5  # (10 - 2) / 50 s, at least half a second


async def test_graphql_failed_operation_is_permanent(http: aioresponses, client: ShopifyClient) -> None:
    op = "gid://shopify/BulkOperation/1"
    http.post(
        GQL, payload=gql_ok({"node": {"id": op, "status": "FAILED", "errorCode": "INTERNAL_SERVER_ERROR"}})
    )
    with pytest.raises(PermanentApiError, match="INTERNAL_SERVER_ERROR"):
        await client.wait_for_bulk_operation(op, poll_s=0.01)


async def test_jsonl_lines_longer_than_a_chunk(http: aioresponses, client: ShopifyClient) -> None:
    lines = [{"id": n, "note": "x" * (n * 37)} for n in range(1, 30)]
    http.get(
        "https://storage.test/e.jsonl", body=b"\n".join(orjson.dumps(x) for x in lines)
    )  # no final newline
    got = [line async for line in stream_jsonl(client, "https://storage.test/e.jsonl", chunk_size=16)]
    assert got == lines
