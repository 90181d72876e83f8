"""The Shopify Admin REST client: one aiohttp session, the store's shared leaky bucket.

Every request: a permit of this process's Shopify semaphore, a slot in the store's bucket (shared
by every process through Redis), one HTTP request. Every answer's `X-Shopify-Shop-Api-Call-Limit`
is fed back: when Shopify's bucket is fuller than ours (another client of the same app and
store), ours is pushed forward to match. A 429 holds the bucket for `Retry-After` (2 s when
missing) and is retried within the retry policy's budget.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis
from yarl import URL

from core.keys import Keys
from core.logging import get_logger
from core.shopify_auth import StaticToken, TokenSource
from mappings.installation import Shop
from worker import metrics, shopify_graphql
from worker.errors import (
    LimiterTimeoutError,
    NotFoundError,
    error_from_response,
    parse_retry_after,
)
from worker.http import Answer, build_url, new_session, send
from worker.ratelimit import RateLimiter, WaitTooLongError, permit, shopify_bucket
from worker.retry import RetryPolicy, call_with_retries

log = get_logger(__name__)

Json = dict[str, Any]
MAX_PAGE_SIZE = 250
DEFAULT_RETRY_AFTER_S = 2.0  # Shopify sometimes answers 429 without Retry-After

CUSTOMERS = "/customers.json"
CUSTOMER = "/customers/{id}.json"
CUSTOMER_COUNT = "/customers/count.json"
PRODUCT = "/products/{id}.json"
PRODUCTS = "/products.json"
ORDERS = "/orders.json"
WEBHOOKS = "/webhooks.json"
WEBHOOK = "/webhooks/{id}.json"
SHOP = "/shop.json"
ACCESS_SCOPES = "/admin/oauth/access_scopes.json"  # not under /admin/api/{version}

_LINK = re.compile(r"<([^>]*)>\s*;\s*rel=\"?([a-z]+)\"?")


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """`X-Shopify-Shop-Api-Call-Limit: 32/40` -> (32, 40); None when absent or malformed."""
    if not value:
        return None
    used, _, size = value.partition("/")
    try:
        parsed = int(used.strip()), int(size.strip())
    except ValueError:
        return None
    return parsed if parsed[1] > 0 else None


def next_page_info(link: str | None) -> str | None:
    """The `page_info` of the `rel="next"` URL of a `Link` header, if any."""
    for url, rel in _LINK.findall(link or ""):
        if rel == "next":
            return URL(url).query.get("page_info")
    return None


def _when(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _fields(fields: Sequence[str] | str | None) -> str | None:
    return fields if fields is None or isinstance(fields, str) else ",".join(fields)


class ShopifyClient:
    def __init__(
        self,
        shop: Shop,
        redis: Redis,
        limiter: RateLimiter,
        keys: Keys,
        session: aiohttp.ClientSession | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_wait_s: float | None = None,
        pool_concurrency: int | None = None,
        tokens: TokenSource | None = None,  # the shop's token source (worker/context.py)
    ) -> None:
        self.store = shop
        self.tokens: TokenSource = tokens or StaticToken(shop.access_token)
        self.redis = redis
        self.keys = keys
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.max_wait_s = max_wait_s
        self.pool_concurrency = pool_concurrency  # optional cap over all processes (Redis leases)
        self._own_session = session is None
        self.session = session or new_session()
        self.bucket = shopify_bucket(shop)
        self.api_base = f"{shop.admin_url}/admin/api/{shop.api_version}"
        self._semaphore = limiter.concurrency(f"shopify:{shop.domain}", shop.limits.shopify_concurrency)

    async def close(self) -> None:
        if self._own_session:
            await self.session.close()

    async def __aenter__(self) -> ShopifyClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- customers --------------------------------------------------------------------------

    def iter_customer_pages(
        self,
        updated_at_min: datetime | str | None = None,
        limit: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | str | None = None,
    ) -> AsyncIterator[list[Json]]:
        """Every customer (updated since `updated_at_min`), one page at a time."""
        return self._pages(CUSTOMERS, "customers", {"updated_at_min": _when(updated_at_min)}, limit, fields)

    async def get_customer(self, customer_id: int | str) -> Json | None:
        data = await self._get(CUSTOMER, missing_ok=True, id=customer_id)
        return None if data is None else dict(data["customer"])

    async def count_customers(self) -> int:
        data = await self._get(CUSTOMER_COUNT)
        assert data is not None
        return int(data["count"])

    # --- orders and products ----------------------------------------------------------------

    def iter_order_pages(
        self,
        status: str = "any",
        updated_at_min: datetime | str | None = None,
        created_at_min: datetime | str | None = None,
        customer_id: int | str | None = None,
        limit: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | str | None = None,
    ) -> AsyncIterator[list[Json]]:
        filters = {
            "status": status,
            "updated_at_min": _when(updated_at_min),
            "created_at_min": _when(created_at_min),
            "customer_id": None if customer_id is None else str(customer_id),
        }
        return self._pages(ORDERS, "orders", filters, limit, fields)

    async def get_product(self, product_id: int | str) -> Json | None:
        data = await self._get(PRODUCT, missing_ok=True, id=product_id)
        return None if data is None else dict(data["product"])

    async def get_products(
        self, product_ids: Sequence[int | str], fields: Sequence[str] | str | None = None
    ) -> list[Json]:
        """Products by id, 250 per request (`products.json?ids=`); ids Shopify lacks are left out."""
        out: list[Json] = []
        for start in range(0, len(product_ids), MAX_PAGE_SIZE):
            ids = ",".join(str(i) for i in product_ids[start : start + MAX_PAGE_SIZE])
            async for page in self._pages(PRODUCTS, "products", {"ids": ids}, MAX_PAGE_SIZE, fields):
                out.extend(page)
        return out

    # --- webhooks, scopes, shop ---------------------------------------------------------------

    async def webhooks(self) -> list[Json]:
        data = await self._get(WEBHOOKS, query={"limit": MAX_PAGE_SIZE})
        assert data is not None
        return list(data["webhooks"])

    async def create_webhook(self, topic: str, address: str, format: str = "json") -> Json:
        body = {"webhook": {"topic": topic, "address": address, "format": format}}
        answer = await self._request("POST", WEBHOOKS, body=orjson.dumps(body))
        assert answer is not None
        return dict(answer.json()["webhook"])

    async def delete_webhook(self, webhook_id: int | str) -> bool:
        """False when it was already gone (idempotent)."""
        answer = await self._request("DELETE", WEBHOOK, missing_ok=True, id=webhook_id)
        return answer is not None

    async def access_scopes(self) -> list[str]:
        url = build_url(self.store.admin_url, ACCESS_SCOPES)
        answer = await self._request("GET", ACCESS_SCOPES, url=url)
        assert answer is not None
        return [str(scope["handle"]) for scope in answer.json()["access_scopes"]]

    async def shop(self) -> Json:
        data = await self._get(SHOP)
        assert data is not None
        return dict(data["shop"])

    # --- GraphQL bulk export (see worker.shopify_graphql) ------------------------------------

    async def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, cost: int = 1
    ) -> dict[str, Any]:
        return await shopify_graphql.graphql(self, query, variables, cost=cost)

    async def run_bulk_customer_export(self, query: str = shopify_graphql.BULK_CUSTOMERS_QUERY) -> str:
        return await shopify_graphql.run_bulk_customer_export(self, query)

    async def bulk_operation(self, operation_id: str) -> Json | None:
        return await shopify_graphql.bulk_operation(self, operation_id)

    async def wait_for_bulk_operation(self, operation_id: str, *, poll_s: float = 2.0) -> Json:
        return await shopify_graphql.wait_for_bulk_operation(self, operation_id, poll_s=poll_s)

    def stream_jsonl(self, url: str) -> AsyncIterator[Json]:
        return shopify_graphql.stream_jsonl(self, url)

    def iter_bulk_customers(
        self, query: str = shopify_graphql.BULK_CUSTOMERS_QUERY, *, poll_s: float = 2.0
    ) -> AsyncIterator[Json]:
        """Every customer of the store from one bulk export, streamed a line at a time."""
        return shopify_graphql.iter_bulk_customers(self, query, poll_s=poll_s)

    # --- plumbing: permits ----------------------------------------------------------------

    def _permit(self, method: str, route: str) -> contextlib.AbstractAsyncContextManager[None]:
        return permit(
            self.limiter,
            self._semaphore,
            api="shopify",
            name=f"shopify:{self.store.domain}",
            pool_size=self.pool_concurrency,
            max_wait_s=self.max_wait_s,
            method=method,
            route=route,
        )

    # --- plumbing: requests ---------------------------------------------------------------

    async def _pages(
        self,
        route: str,
        name: str,
        filters: Mapping[str, str | None],
        limit: int,
        fields: Sequence[str] | str | None,
    ) -> AsyncIterator[list[Json]]:
        # With page_info Shopify accepts only limit and fields: filters go on the first page only.
        common = {"limit": max(1, min(limit, MAX_PAGE_SIZE)), "fields": _fields(fields)}
        query: dict[str, Any] = {**filters, **common}
        while True:
            answer = await self._request("GET", route, query=query)
            assert answer is not None
            page = list(answer.json()[name])
            page_info = next_page_info(answer.headers.get("Link"))
            if page:
                yield page
            if page_info is None:
                return
            query = {**common, "page_info": page_info}

    async def _get(
        self, route: str, *, query: Mapping[str, Any] | None = None, missing_ok: bool = False, **params: Any
    ) -> Json | None:
        answer = await self._request("GET", route, query=query, missing_ok=missing_ok, **params)
        return None if answer is None else dict(answer.json())

    async def _request(
        self,
        method: str,
        route: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        url: URL | None = None,
        missing_ok: bool = False,
        **params: Any,
    ) -> Answer | None:
        target = url or build_url(self.api_base, route, query, **params)

        async def attempt() -> Answer | None:
            try:
                return await self._attempt(method, target, route, body)
            except NotFoundError:
                if missing_ok:
                    return None
                raise

        return await call_with_retries(attempt, self.retry, api="shopify")

    async def _attempt(self, method: str, url: URL, route: str, body: bytes | None) -> Answer:
        async with self._permit(method, route):
            answer, token = await self._send_once(method, url, route, body)
            if answer.status == 401:
                # Expired early or revoked: the token source mints or refreshes once, one more try
                # (a static token cannot be renewed: no second try with the same one).
                await self.tokens.invalidate(token)
                if await self.tokens.token() != token:
                    answer, _ = await self._send_once(method, url, route, body)
        await self._feed_back(answer)
        if answer.status < 400:
            return answer
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        if answer.status == 429:
            retry_after = DEFAULT_RETRY_AFTER_S if retry_after is None else retry_after
            # Everyone waits, reservations already handed out included.
            await self.limiter.delay(self.bucket, retry_after, guard_s=retry_after / 2)
            metrics.fed_back("shopify", "429")
            log.warning(
                "shopify_rate_limited", shop=self.store.domain, route=route, retry_after_s=retry_after
            )
        raise error_from_response(
            "shopify", answer.status, answer.body, retry_after=retry_after, method=method, route=route
        )

    async def _send_once(self, method: str, url: URL, route: str, body: bytes | None) -> tuple[Answer, str]:
        token = await self.tokens.token()
        headers = {"X-Shopify-Access-Token": token, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            await self.limiter.acquire_bucket(self.bucket, max_wait_s=self.max_wait_s)
        except WaitTooLongError as exc:
            raise LimiterTimeoutError(
                "shopify", None, "rate limit", "store bucket busy", exc.wait_s, method=method, route=route
            ) from None
        answer = await send(self.session, "shopify", method, url, route, headers=headers, body=body)
        return answer, token

    async def _feed_back(self, answer: Answer) -> None:
        """Slow down when Shopify's bucket has less room than ours expects (another client of
        the same app and store draws from it, or our clock runs ahead of Shopify's leak)."""
        limit = parse_call_limit(answer.headers.get("X-Shopify-Shop-Api-Call-Limit"))
        if limit is None:
            return
        used, size = limit
        room = size - used
        margin = max(1.0, size - self.bucket.burst)  # the room our smaller bucket always leaves
        if room >= margin:
            return
        # Pause (waiters already holding reservations too) for the time Shopify needs to leak
        # back to our margin. Answers to requests already in flight report the same
        # congestion, so the pause is applied once per period.
        leak = self.store.limits.shopify_leak_per_s
        delay = (margin + 1 - room) / leak
        if await self.limiter.delay(self.bucket, delay, guard_s=1 / leak):
            metrics.fed_back("shopify", "call-limit")
            log.info("shopify_bucket_fuller_than_ours", shop=self.store.domain, used=used, size=size)
