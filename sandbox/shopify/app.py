"""The simulated store's Admin API: `create_app(store)` -> aiohttp application.

Only the GraphQL Admin API is served (`POST /admin/api/{version}/graphql.json`, see
`gql/endpoint.py`), with the OAuth token routes (`oauth.py`) and the `/_sandbox/` control API
(`control.py`). Shopify's REST Admin API is legacy since 2024-10 and closed to new public apps
since 2025-04 (https://shopify.dev/docs/api/admin-rest); the worker no longer calls it, so its
routes are gone here and answer what Shopify answers for a path it does not serve: 404
`{"errors": "Not Found"}`. REST shapes live on only as webhook payloads (`serialize.py`).

One middleware does what Shopify does before any handler under `/admin/`: an unknown API version
-> 404, a wrong or missing `X-Shopify-Access-Token` -> 401, and the `X-Shopify-API-Version`
header on the answer. Requests are counted by route and status in `app[COUNTERS]`
(`/_sandbox/requests`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from sandbox.shopify import oauth
from sandbox.shopify.appkeys import COUNTERS, GRAPHQL_COUNTERS, STORE
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.gql.topics import TOPIC_SCOPES
from sandbox.shopify.serialize import supported_version
from sandbox.shopify.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


@web.middleware
async def shopify_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else request.path}"
    if not request.path.startswith("/admin/") or request.path in oauth.PUBLIC_PATHS:
        response = await handler(request)
    else:
        response = await _admin(request, handler)
    request.app[COUNTERS][(name, response.status)] += 1
    return response


async def _admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if request.match_info.http_exception is not None or (
        version is not None and not supported_version(version)
    ):
        return json_response({"errors": "Not Found"}, 404)
    if not oauth.authorized(request.app, request.headers.get("X-Shopify-Access-Token", "")):
        return json_response(
            {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401
        )
    response = await handler(request)
    if version is not None:
        response.headers["X-Shopify-API-Version"] = version
    return response


async def not_found(request: web.Request) -> web.Response:
    """Any other Admin path, the REST Admin API's among them: Shopify's 404."""
    return json_response({"errors": "Not Found"}, 404)


def create_app(store: Store) -> web.Application:
    """The whole simulator: the GraphQL Admin API, OAuth, and the `/_sandbox/` control API."""
    from sandbox.shopify import control, graphql
    from sandbox.shopify.gql import context as gql_context
    from sandbox.shopify.gql import endpoint
    from sandbox.shopify.ratelimit import CostBuckets

    app = web.Application(middlewares=[shopify_middleware], client_max_size=2**20)
    app[STORE] = store
    app[COUNTERS] = Counter()
    app[GRAPHQL_COUNTERS] = Counter()
    app[graphql.BULK] = graphql.BulkRegistry()
    app[endpoint.BUCKETS] = CostBuckets()
    app[gql_context.GQL_CONFIG] = gql_context.GraphQLConfig()
    r = app.router
    r.add_post("/admin/api/{version}/graphql.json", endpoint.handle)
    control.add_routes(app)
    oauth.add_routes(app)
    r.add_route("*", "/admin/api/{version}/{tail:.*}", not_found)
    r.add_route("*", "/admin/{tail:.*}", not_found)
    return app


__all__ = ["COUNTERS", "CUSTOMER_BASE", "STORE", "TOPIC_SCOPES", "create_app"]
