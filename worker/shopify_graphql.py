"""One call to Shopify's GraphQL Admin API: `POST {admin_url}/admin/api/{graphql_api_version}/graphql.json`.

Each attempt: this process's Shopify permit, the query's estimated cost spent from the store's
shared cost bucket (`worker.shopify_cost`), the token from the shop's `TokenSource`, one POST.
The answer's `extensions.cost` is fed back (the bucket learned, unused points given back).
A 401 invalidates the token; retried once only when the source hands out a different one. `errors` (even beside partial
`data`) fail the call with a typed error (`worker.shopify_errors`): `THROTTLED` waits for the
points and is retried within the retry policy, the rest as their type says. A query whose cost
is above what one query may request fails before it is sent (`CostTooHighError`).

The calls take any `ShopifyConnection` (in practice the `ShopifyClient`); this module never
imports the client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from core.logging import get_logger
from core.shopify_auth import TokenSource
from mappings.installation import Shop
from worker import metrics
from worker.errors import AuthError, LimiterTimeoutError, error_from_response
from worker.http import Answer, build_url, send
from worker.ratelimit import RateLimiter, WaitTooLongError
from worker.retry import RetryPolicy, call_with_retries
from worker.shopify_cost import SINGLE_QUERY_MAX, CostLimiter, estimate_cost, refine
from worker.shopify_errors import ROUTE, CostTooHighError, graphql_error, is_throttled

log = get_logger(__name__)

GRAPHQL = "/graphql.json"


class ShopifyConnection(Protocol):
    """What a GraphQL call needs from the client of one store: the shop, the GraphQL endpoint's
    base URL, the token source, the cost bucket, the shared limiter and how long to wait for it,
    a request permit, the HTTP session and the retry policy."""

    @property
    def store(self) -> Shop: ...

    @property
    def graphql_base(self) -> str: ...

    @property
    def tokens(self) -> TokenSource: ...

    @property
    def cost(self) -> CostLimiter: ...

    @property
    def limiter(self) -> RateLimiter: ...

    @property
    def max_wait_s(self) -> float | None: ...

    @property
    def session(self) -> aiohttp.ClientSession: ...

    @property
    def retry(self) -> RetryPolicy: ...

    def permit(self, operation: str) -> contextlib.AbstractAsyncContextManager[None]: ...


def operation_name(query: str) -> str:
    """`query customers(...)` -> `customers` (for logs and metrics); `graphql` when anonymous."""
    head = query.lstrip().split("(", 1)[0].split("{", 1)[0].split()
    return head[1] if len(head) >= 2 else "graphql"


async def graphql(
    conn: ShopifyConnection,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    cost: float | None = None,
) -> dict[str, Any]:
    """Run one query or mutation; its `data`. Every failure is a typed `ApiError`."""
    variables = dict(variables or {})
    requested = float(cost if cost is not None else estimate_cost(query, variables))
    limit = min(SINGLE_QUERY_MAX, conn.cost.maximum)
    if requested > limit:
        raise CostTooHighError(requested, limit)
    url = build_url(conn.graphql_base, GRAPHQL)
    body = orjson.dumps({"query": query, "variables": variables})
    name = operation_name(query)

    async def attempt() -> dict[str, Any]:
        async with conn.permit(name):
            turn = conn.cost.turn(requested, max_wait_s=conn.max_wait_s)
            try:
                spent = await turn.__aenter__()
            except WaitTooLongError as exc:
                raise LimiterTimeoutError(
                    "shopify",
                    None,
                    "rate limit",
                    "GraphQL cost bucket busy",
                    exc.wait_s,
                    method="POST",
                    route=ROUTE,
                ) from None
            try:
                answer = await _post(conn, url, body)
                return await _answered(conn, query, variables, requested, spent, answer)
            finally:
                await turn.__aexit__(None, None, None)

    return await call_with_retries(attempt, conn.retry, api="shopify")


async def _answered(
    conn: ShopifyConnection,
    query: str,
    variables: Mapping[str, Any],
    requested: float,
    spent: float,
    answer: Answer,
) -> dict[str, Any]:
    """The answer's `data`, its cost fed back to the bucket; its errors raised, typed."""
    if answer.status >= 400:
        raise error_from_response("shopify", answer.status, answer.body, method="POST", route=ROUTE)
    payload = answer.json()
    if not isinstance(payload, Mapping):
        raise error_from_response("shopify", 502, answer.body, method="POST", route=ROUTE)
    extensions = payload.get("extensions")
    errors = payload.get("errors")
    name = operation_name(query)
    if errors and is_throttled(errors):
        wait = await conn.cost.throttled(extensions, requested)
        metrics.fed_back("shopify-graphql", "throttled")
        log.warning("shopify_throttled", shop=conn.store.domain, operation=name, wait_s=round(wait, 2))
        raise graphql_error(errors, retry_after=wait)
    await conn.cost.settle(extensions, spent)
    cost_info = extensions.get("cost") if isinstance(extensions, Mapping) else None
    if isinstance(cost_info, Mapping):
        refine(query, variables, cost_info.get("requestedQueryCost"))
    if errors:
        error = graphql_error(errors, requested=requested)
        log.warning("shopify_graphql_error", shop=conn.store.domain, operation=name, error=str(error))
        raise error
    data = payload.get("data")
    return dict(data) if isinstance(data, Mapping) else {}


async def _post(conn: ShopifyConnection, url: URL, body: bytes) -> Answer:
    """One POST with the token source's token. On 401 (expired early or revoked) the token is
    invalidated and the POST sent once more, only when the source renews it (a static token
    cannot be renewed: no second try with the same one); a 401 left is an `AuthError`."""
    answer, token = await _send_once(conn, url, body)
    if answer.status == 401:
        await conn.tokens.invalidate(token)
        if await conn.tokens.token() != token:
            log.info("shopify_token_refused_retrying", shop=conn.store.domain)
            answer, _ = await _send_once(conn, url, body)
    if answer.status == 401:
        raise error_from_response("shopify", 401, answer.body, method="POST", route=ROUTE)
    return answer


async def _send_once(conn: ShopifyConnection, url: URL, body: bytes) -> tuple[Answer, str]:
    token = await conn.tokens.token()
    headers = {
        "X-Shopify-Access-Token": token,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    return await send(conn.session, "shopify", "POST", url, ROUTE, headers=headers, body=body), token


__all__ = ["GRAPHQL", "AuthError", "ShopifyConnection", "graphql", "operation_name"]
