"""Shopify GraphQL for whole-store exports: a bulk operation, polled, its JSONL streamed by line.

A bulk operation exports every customer without the REST bucket's per-request limit: one
mutation starts it, a few cheap polls follow it, and the result is one JSONL file at a signed URL
that is read as a stream (a line at a time: a store of millions never sits in memory).

GraphQL has its own throttle (query cost points, `extensions.cost.throttleStatus`); a shared Redis
bucket per store spends the query's cost before each call, and a `THROTTLED` answer delays it by
the time the points need to come back. The calls take any `ShopifyConnection` (in practice the
`ShopifyClient`, which offers them as methods); this module never imports the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from core.logging import get_logger
from core.shopify_auth import TokenSource
from mappings.installation import Shop
from worker.errors import (
    AuthError,
    LimiterTimeoutError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    error_from_response,
)
from worker.http import build_url, send
from worker.ratelimit import Bucket, RateLimiter, WaitTooLongError
from worker.retry import RetryPolicy, call_with_retries

log = get_logger(__name__)

GRAPHQL = "/graphql.json"
RUN_COST = 10
POLL_COST = 1
GRAPHQL_MAXIMUM = 1000.0  # points (standard plans); restore 50/s
GRAPHQL_RESTORE_PER_S = 50.0

BULK_CUSTOMERS_QUERY = """
{
  customers {
    edges {
      node {
        id email phone firstName lastName tags state verifiedEmail note numberOfOrders
        amountSpent { amount currencyCode }
        createdAt updatedAt
        defaultAddress {
          firstName lastName company address1 address2 city province provinceCode country
          countryCodeV2 zip phone
        }
        emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
        smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
      }
    }
  }
}
"""

_RUN = """
mutation bulkOperationRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message }
  }
}
"""

_POLL = """
query bulkOperation($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode createdAt completedAt objectCount fileSize url partialDataUrl }
  }
}
"""

_DONE = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


class BulkOperationBusyError(TransientApiError):
    """Shopify runs one bulk query per app and shop at a time (on older API versions)."""


class ShopifyConnection(Protocol):
    """What a GraphQL call needs from the client of one store: the shop (domain, token, limits),
    the Admin API base URL, the shared rate limiter and how long to wait for it, the HTTP
    session and the retry policy."""

    @property
    def store(self) -> Shop: ...

    @property
    def api_base(self) -> str: ...

    @property
    def tokens(self) -> TokenSource: ...

    @property
    def limiter(self) -> RateLimiter: ...

    @property
    def max_wait_s(self) -> float | None: ...

    @property
    def session(self) -> aiohttp.ClientSession: ...

    @property
    def retry(self) -> RetryPolicy: ...


def graphql_bucket(client: ShopifyConnection) -> Bucket:
    safety = client.store.limits.safety
    return Bucket(
        f"shopify-graphql:{client.store.domain}",
        GRAPHQL_RESTORE_PER_S * safety,
        GRAPHQL_MAXIMUM * safety,
        kind="shopify-graphql",
        shiftable=True,
    )


async def graphql(
    client: ShopifyConnection,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    cost: int = POLL_COST,
) -> dict[str, Any]:
    """Run one GraphQL query or mutation; its `data`. Errors become typed `ApiError`s."""
    bucket = graphql_bucket(client)
    url = build_url(client.api_base, GRAPHQL)
    body = orjson.dumps({"query": query, "variables": dict(variables or {})})

    async def attempt() -> dict[str, Any]:
        headers = {
            "X-Shopify-Access-Token": await client.tokens.token(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            await client.limiter.acquire_bucket(bucket, cost, max_wait_s=client.max_wait_s)
        except WaitTooLongError as exc:
            raise LimiterTimeoutError(
                "shopify", None, "rate limit", "GraphQL bucket busy", exc.wait_s, method="POST", route=GRAPHQL
            ) from None
        answer = await send(client.session, "shopify", "POST", url, GRAPHQL, headers=headers, body=body)
        if answer.status >= 400:
            raise error_from_response("shopify", answer.status, answer.body, method="POST", route=GRAPHQL)
        payload: dict[str, Any] = answer.json() or {}
        errors = payload.get("errors")
        if errors:
            raise await _graphql_error(client, bucket, errors, payload.get("extensions"), cost)
        return dict(payload.get("data") or {})

    return await call_with_retries(attempt, client.retry, api="shopify")


async def _graphql_error(
    client: ShopifyConnection, bucket: Bucket, errors: Any, extensions: Any, cost: int
) -> Exception:
    first = errors[0] if isinstance(errors, list) and errors else {}
    code = str((first.get("extensions") or {}).get("code") or "") if isinstance(first, dict) else ""
    message = str(first.get("message") or "") if isinstance(first, dict) else str(errors)
    if code == "THROTTLED":
        status = ((extensions or {}).get("cost") or {}).get("throttleStatus") or {}
        available = float(status.get("currentlyAvailable") or 0)
        restore = float(status.get("restoreRate") or GRAPHQL_RESTORE_PER_S)
        wait = max(0.5, (cost - available) / restore)
        await client.limiter.delay(bucket, wait, guard_s=wait / 2)
        return RateLimitedError("shopify", 200, "THROTTLED", message, wait, method="POST", route=GRAPHQL)
    if code == "ACCESS_DENIED":
        return AuthError("shopify", 200, code, message, method="POST", route=GRAPHQL)
    if code in ("INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"):
        return TransientApiError("shopify", 200, code, message, method="POST", route=GRAPHQL)
    return PermanentApiError("shopify", 200, code or "GraphQL error", message, method="POST", route=GRAPHQL)


async def run_bulk_customer_export(client: ShopifyConnection, query: str = BULK_CUSTOMERS_QUERY) -> str:
    """Start a bulk export of `query`; the operation's id (`gid://shopify/BulkOperation/...`)."""
    data = await graphql(client, _RUN, {"query": query}, cost=RUN_COST)
    result = data.get("bulkOperationRunQuery") or {}
    user_errors = result.get("userErrors") or []
    if user_errors:
        message = "; ".join(str(e.get("message")) for e in user_errors)
        if "already in progress" in message:
            raise BulkOperationBusyError("shopify", 200, "bulk operation busy", message, 10.0, route=GRAPHQL)
        raise PermanentApiError("shopify", 200, "bulk operation refused", message, route=GRAPHQL)
    operation = result.get("bulkOperation") or {}
    log.info("shopify_bulk_started", shop=client.store.domain, operation=operation.get("id"))
    return str(operation["id"])


async def bulk_operation(client: ShopifyConnection, operation_id: str) -> dict[str, Any] | None:
    """The operation's state: `status`, `objectCount`, `url` (when COMPLETED), `errorCode`..."""
    data = await graphql(client, _POLL, {"id": operation_id}, cost=POLL_COST)
    node = data.get("node")
    return dict(node) if isinstance(node, dict) else None


async def wait_for_bulk_operation(
    client: ShopifyConnection,
    operation_id: str,
    *,
    poll_s: float = 2.0,
    timeout_s: float = 6 * 3600,
    on_progress: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
) -> dict[str, Any]:
    """Poll until the operation ends; its final state. FAILED/CANCELED/EXPIRED raise."""
    deadline = time.monotonic() + timeout_s
    delay = min(0.25, poll_s)
    while True:
        state = await bulk_operation(client, operation_id)
        if state is None:
            raise PermanentApiError(
                "shopify", 404, "bulk operation", f"{operation_id} not found", route=GRAPHQL
            )
        if on_progress is not None:
            maybe = on_progress(state)
            if maybe is not None:
                await maybe
        status = str(state.get("status"))
        if status == "COMPLETED":
            return state
        if status in _DONE:
            raise PermanentApiError(
                "shopify",
                200,
                f"bulk operation {status.lower()}",
                str(state.get("errorCode") or ""),
                route=GRAPHQL,
            )
        if time.monotonic() > deadline:
            raise TransientApiError(
                "shopify", None, "bulk operation", "still running at the timeout", route=GRAPHQL
            )
        await asyncio.sleep(delay)
        delay = min(poll_s, delay * 2)  # small exports finish in a moment; big ones are polled calmly


async def stream_jsonl(
    client: ShopifyConnection, url: str, *, chunk_size: int = 1 << 16
) -> AsyncIterator[dict[str, Any]]:
    """The export's objects one line at a time, whatever the file size or a line's length.

    The URL is pre-signed storage, not the Admin API: no access token goes with it."""
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
    async with client.session.get(url, timeout=timeout) as response:
        if response.status >= 400:
            raise error_from_response("shopify", response.status, await response.read(), route="bulk-jsonl")
        pending = b""
        async for chunk in response.content.iter_chunked(chunk_size):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
        if pending.strip():
            yield orjson.loads(pending)


async def iter_bulk_customers(
    client: ShopifyConnection, query: str = BULK_CUSTOMERS_QUERY, *, poll_s: float = 2.0
) -> AsyncIterator[dict[str, Any]]:
    """Start an export, wait for it, stream its lines (customers; child lines if the query has
    connections, carrying `__parentId`)."""
    operation_id = await run_bulk_customer_export(client, query)
    state = await wait_for_bulk_operation(client, operation_id, poll_s=poll_s)
    url = state.get("url")
    if not url:  # an empty store exports no file
        return
    async for line in stream_jsonl(client, str(url)):
        yield line
