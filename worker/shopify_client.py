"""The Shopify Admin client: every call through the GraphQL Admin API, REST shapes out.

`{admin_url}/admin/api/{shop.graphql_api_version}/graphql.json` (2026-10 unless the shop pins
another), independent of the webhook payload version (`shop.api_version`). Each call goes
through `worker.shopify_graphql.graphql` (the process's permit, the store's shared cost bucket,
the token source with one re-mint on 401, typed errors); the documents are in
`worker.shopify_queries`. Global ids stay inside: callers pass and get numeric ids, and every
node is turned into the REST-shaped dict they have always read (`worker.shopify_shapes`).
Page sizes are chosen from the query's cost (at most 250) and halved when Shopify says a page
costs too much.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp
from redis.asyncio import Redis

from core.keys import Keys
from core.logging import get_logger
from core.shopify_auth import StaticToken, TokenSource
from mappings.installation import Shop
from worker import lanes, shopify_bulk
from worker import shopify_queries as q
from worker import shopify_shapes as shapes
from worker.http import new_session
from worker.ratelimit import RateLimiter, permit
from worker.retry import RetryPolicy
from worker.shopify_bulk_slots import BulkSlots
from worker.shopify_cost import MAX_PAGE_SIZE, CostLimiter, page_size, per_node_cost
from worker.shopify_errors import CostTooHighError, check_user_errors
from worker.shopify_graphql import graphql
from worker.shopify_versions import max_bulk_operations

log = get_logger(__name__)

Json = dict[str, Any]
ORDER_LINES_FIRST = 10  # lines read with each order; the rest, if any, in pages of 100
PRODUCT_NODE_COST = 4  # Product, featuredMedia, preview, image
BULK_PAGE_RESTORE_S = 2.0  # the most restore time one full-sync or audit page may spend


def _when(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def search_query(**terms: str | None) -> str | None:
    """Shopify search syntax: `updated_at:>='2024-01-01T00:00:00Z' AND customer_id:7`."""
    parts = []
    for key, value in terms.items():
        if value is None:
            continue
        field, _, op = key.partition("__")
        parts.append(f"{field}:>='{value}'" if op == "min" else f"{field}:{value}")
    return " AND ".join(parts) or None


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
        tokens: TokenSource | None = None,
    ) -> None:
        self.store = shop
        self.redis = redis
        self.keys = keys
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.max_wait_s = max_wait_s
        self.pool_concurrency = pool_concurrency  # optional cap over all processes (Redis leases)
        self.tokens: TokenSource = tokens or StaticToken(shop.access_token)
        self.cost = CostLimiter(shop, redis, limiter, keys)
        self._own_session = session is None
        self.session = session or new_session()
        self.graphql_base = f"{shop.admin_url}/admin/api/{shop.graphql_api_version}"
        self.documents = q.customer_documents(shop.graphql_api_version)
        self._semaphore = limiter.concurrency(f"shopify:{shop.domain}", shop.limits.shopify_concurrency)
        # The shop's bulk-operation slots, leased by the whole pool (worker.shopify_bulk_slots).
        self.bulk_slots = BulkSlots(redis, keys, shop.domain, max_bulk_operations(shop.graphql_api_version))

    async def close(self) -> None:
        if self._own_session:
            await self.session.close()

    async def __aenter__(self) -> ShopifyClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def permit(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]:
        return permit(
            self.limiter,
            self._semaphore,
            api="shopify",
            name=f"shopify:{self.store.domain}",
            pool_size=self.pool_concurrency,
            max_wait_s=self.max_wait_s,
            method="POST",
            route=f"graphql:{operation}",
        )

    async def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, cost: float | None = None
    ) -> Json:
        return await graphql(self, query, variables, cost=cost)

    # --- customers --------------------------------------------------------------------------

    async def get_customer(self, customer_id: int | str) -> Json | None:
        data = await self.graphql(self.documents.customer, {"id": shapes.gid("Customer", customer_id)})
        node = data.get("customer")
        return shapes.rest_customer(node) if isinstance(node, Mapping) else None

    async def customer_page(
        self, cursor: str | None, *, updated_at_min: datetime | str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> tuple[list[Json], str | None]:
        """One page of customers (by id, updated since `updated_at_min`) and the cursor of the
        next (None at the end). The page holds as many as the cost allows, up to `limit`."""
        variables = {"after": cursor, "query": search_query(updated_at__min=_when(updated_at_min))}
        nodes, next_cursor = await self._page(self.documents.customers, "customers", variables, limit)
        return [shapes.rest_customer(n) for n in nodes], next_cursor

    async def iter_customer_pages(
        self,
        updated_at_min: datetime | str | None = None,
        limit: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | str | None = None,  # REST's trimming; GraphQL asks for fixed fields
    ) -> AsyncIterator[list[Json]]:
        """Every customer (updated since `updated_at_min`), one page at a time."""
        cursor: str | None = None
        while True:
            page, cursor = await self.customer_page(cursor, updated_at_min=updated_at_min, limit=limit)
            if page:
                yield page
            if cursor is None:
                return

    async def count_customers(self, updated_at_min: datetime | str | None = None) -> int:
        query = search_query(updated_at__min=_when(updated_at_min))
        data = await self.graphql(q.CUSTOMERS_COUNT_QUERY, {"query": query})
        return int((data.get("customersCount") or {}).get("count") or 0)

    # --- orders and products ----------------------------------------------------------------

    async def iter_order_pages(
        self,
        status: str = "any",
        updated_at_min: datetime | str | None = None,
        created_at_min: datetime | str | None = None,
        customer_id: int | str | None = None,
        limit: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | str | None = None,
    ) -> AsyncIterator[list[Json]]:
        """Orders newest first (every status: GraphQL's `orders` is not limited to open ones)."""
        query = search_query(
            updated_at__min=_when(updated_at_min),
            created_at__min=_when(created_at_min),
            customer_id=None if customer_id is None else str(customer_id),
        )
        cursor: str | None = None
        while True:
            variables = {"after": cursor, "query": query, "lines": ORDER_LINES_FIRST}
            nodes, cursor = await self._page(q.ORDERS_QUERY, "orders", variables, limit)
            page = [shapes.rest_order(node, await self._order_lines(node)) for node in nodes]
            if page:
                yield page
            if cursor is None:
                return

    async def _order_lines(self, order: Mapping[str, Any]) -> list[Json]:
        connection = order.get("lineItems") or {}
        lines = list(connection.get("nodes") or [])
        info = connection.get("pageInfo") or {}
        while info.get("hasNextPage"):
            data = await self.graphql(
                q.ORDER_LINES_QUERY, {"id": order["id"], "first": 100, "after": info.get("endCursor")}
            )
            connection = (data.get("order") or {}).get("lineItems") or {}
            lines.extend(connection.get("nodes") or [])
            info = connection.get("pageInfo") or {}
        return lines

    async def get_product(self, product_id: int | str) -> Json | None:
        found = await self.get_products([product_id])
        return found[0] if found else None

    async def get_products(
        self, product_ids: Sequence[int | str], fields: Sequence[str] | str | None = None
    ) -> list[Json]:
        """Products by id (`nodes(ids:)`, as many per query as the cost allows); ids Shopify
        lacks are left out."""
        out: list[Json] = []
        size = page_size(PRODUCT_NODE_COST, 1.0, self.cost.maximum)
        for start in range(0, len(product_ids), size):
            ids = [shapes.gid("Product", i) for i in product_ids[start : start + size]]
            data = await self.graphql(q.PRODUCTS_QUERY, {"ids": ids}, cost=1 + PRODUCT_NODE_COST * len(ids))
            out.extend(
                shapes.rest_product(n) for n in data.get("nodes") or [] if isinstance(n, Mapping) and n
            )
        return out

    # --- webhooks, scopes, shop ---------------------------------------------------------------

    async def webhooks(self) -> list[Json]:
        out: list[Json] = []
        cursor: str | None = None
        while True:
            nodes, cursor = await self._page(q.WEBHOOKS_QUERY, "webhookSubscriptions", {"after": cursor})
            out.extend(shapes.rest_webhook(n) for n in nodes)
            if cursor is None:
                return out

    async def create_webhook(self, topic: str, address: str, format: str = "json") -> Json:
        variables = {
            "topic": shapes.topic_enum(topic),
            "subscription": {"uri": address, "format": format.upper()},
        }
        data = await self.graphql(q.WEBHOOK_CREATE_MUTATION, variables)
        result = check_user_errors("webhookSubscriptionCreate", data.get("webhookSubscriptionCreate"))
        return shapes.rest_webhook(result["webhookSubscription"])

    async def delete_webhook(self, webhook_id: int | str) -> bool:
        """False when it was already gone (idempotent)."""
        variables = {"id": shapes.gid("WebhookSubscription", webhook_id)}
        data = await self.graphql(q.WEBHOOK_DELETE_MUTATION, variables)
        result = data.get("webhookSubscriptionDelete") or {}
        errors = result.get("userErrors") or []
        if errors and all(_is_missing(str(e.get("message") or "")) for e in errors):
            return False
        check_user_errors("webhookSubscriptionDelete", result)
        return result.get("deletedWebhookSubscriptionId") is not None

    async def access_scopes(self) -> list[str]:
        data = await self.graphql(q.ACCESS_SCOPES_QUERY)
        scopes = (data.get("currentAppInstallation") or {}).get("accessScopes") or []
        return [str(scope["handle"]) for scope in scopes]

    async def shop(self) -> Json:
        data = await self.graphql(q.SHOP_QUERY)
        return shapes.rest_shop(data.get("shop") or {})

    # --- bulk export (see worker.shopify_bulk) -----------------------------------------------

    async def run_bulk_customer_export(
        self, query: str | None = None, *, slot_wait_s: float = shopify_bulk.SLOT_WAIT_S
    ) -> str:
        """Start the customer export once one of the shop's bulk slots is free (see
        worker.shopify_bulk_slots); polls through `bulk_operation` renew and release it."""
        return await shopify_bulk.run_bulk_query(
            self, query or self.documents.bulk, slots=self.bulk_slots, slot_wait_s=slot_wait_s
        )

    async def bulk_operation(self, operation_id: str) -> Json | None:
        return await shopify_bulk.bulk_operation(self, operation_id, slots=self.bulk_slots)

    async def wait_for_bulk_operation(self, operation_id: str, *, poll_s: float = 2.0) -> Json:
        return await shopify_bulk.wait_for_bulk_operation(
            self, operation_id, poll_s=poll_s, slots=self.bulk_slots
        )

    def stream_jsonl(self, url: str) -> AsyncIterator[Json]:
        return shopify_bulk.stream_jsonl(self, url)

    def iter_bulk_customers(
        self,
        query: str | None = None,
        *,
        poll_s: float = 2.0,
        slot_wait_s: float = shopify_bulk.SLOT_WAIT_S,
    ) -> AsyncIterator[Json]:
        """Every customer of the store from one bulk export, streamed a line at a time."""
        return shopify_bulk.iter_bulk(
            self, query or self.documents.bulk, poll_s=poll_s, slots=self.bulk_slots, slot_wait_s=slot_wait_s
        )

    # --- plumbing: connection pages -------------------------------------------------------

    async def _page(
        self, document: str, field: str, variables: Mapping[str, Any], limit: int = MAX_PAGE_SIZE
    ) -> tuple[list[Json], str | None]:
        """One page of the connection `field`: its nodes and the next cursor (None at the end).
        The page size is the most the cost allows (up to `limit`), halved while Shopify says
        the query costs too much."""
        await self.cost.load()
        budget = self.cost.maximum
        if lanes.LANE.get() == "bulk":
            # A walk's page holds the shared bucket for its cost's restore time, and a webhook's
            # read (a few points) waits behind it: at most BULK_PAGE_RESTORE_S of restore a page
            # (the walk's rate is the restore rate either way; 200 points on a Standard plan).
            budget = min(budget, self.cost.restore_per_s * BULK_PAGE_RESTORE_S)
        size = min(limit, page_size(per_node_cost(document, variables), 2.0, budget))
        while True:
            try:
                data = await self.graphql(document, {**variables, "first": max(1, size)})
                break
            except CostTooHighError:
                if size <= 1:
                    raise
                size //= 2
                log.info("shopify_page_smaller", shop=self.store.domain, field=field, size=size)
        connection = data.get(field) or {}
        info = connection.get("pageInfo") or {}
        nodes = [dict(n) for n in connection.get("nodes") or [] if isinstance(n, Mapping)]
        return nodes, (str(info["endCursor"]) if info.get("hasNextPage") and info.get("endCursor") else None)


def _is_missing(message: str) -> bool:
    text = message.lower()
    return "does not exist" in text or "not found" in text or "could not find" in text
