"""The Admin REST API of the simulated store: `create_app(store)` -> aiohttp application.

One middleware does what Shopify does before any handler: unknown API version -> 404, wrong or
missing `X-Shopify-Access-Token` -> 401, the leaky bucket (and injected 429s) -> 429, and the
`X-Shopify-Shop-Api-Call-Limit` header on every answer. Handlers check scopes (403) and serve
Shopify's JSON with cursor pagination. Requests are counted by route and status in
`app[COUNTERS]` for inspection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from sandbox.shopify import oauth
from sandbox.shopify.appkeys import COUNTERS, GRAPHQL_COUNTERS, STORE
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.gql.topics import TOPIC_SCOPES
from sandbox.shopify.models import Customer, Order
from sandbox.shopify.pagination import (
    Cursor,
    PageError,
    check_page_info_params,
    decode_cursor,
    link_header,
    parse_limit,
)
from sandbox.shopify.serialize import (
    serialize_customer,
    serialize_order,
    serialize_product,
    serialize_subscription,
    supported_version,
)
from sandbox.shopify.store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIXTY_DAYS = 60 * 86400
CUSTOMER_FILTERS = ("ids", "since_id", "created_at_min", "created_at_max", "updated_at_min", "updated_at_max")
ORDER_FILTERS = (
    "ids", "since_id", "status", "financial_status", "fulfillment_status", "customer_id",
    "created_at_min", "created_at_max", "updated_at_min", "updated_at_max", "processed_at_min", "processed_at_max",
)  # fmt: skip


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


class ApiError(Exception):
    def __init__(self, status: int, errors: Any) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = errors


def require_scope(request: web.Request, scope: str) -> None:
    if scope not in request.app[STORE].granted_scopes:
        raise ApiError(403, f"[API] This action requires merchant approval for {scope} scope.")


# --- middleware ---------------------------------------------------------------------------------


@web.middleware
async def shopify_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    store = request.app[STORE]
    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else request.path}"
    if not request.path.startswith("/admin/") or request.path in oauth.PUBLIC_PATHS:
        response = await handler(request)
        request.app[COUNTERS][(name, response.status)] += 1
        return response
    response = await _admin(request, handler, store)
    request.app[COUNTERS][(name, response.status)] += 1
    return response


async def _admin(request: web.Request, handler: Handler, store: Store) -> web.StreamResponse:
    version = request.match_info.get("version")
    if request.match_info.http_exception is not None or (
        version is not None and not supported_version(version)
    ):
        return json_response({"errors": "Not Found"}, 404)
    if not oauth.authorized(request.app, request.headers.get("X-Shopify-Access-Token", "")):
        return json_response(
            {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401
        )
    is_graphql = request.path.endswith("/graphql.json")
    headers: dict[str, str] = {}
    if version is not None:
        headers["X-Shopify-API-Version"] = version
    if not is_graphql:
        cfg = store.rate_limit
        bucket = store.bucket
        bucket.size, bucket.rate = cfg.bucket_size, cfg.leak_rate
        now = store.monotonic()
        injected = cfg.fault_429_rate > 0 and store.rng.random() < cfg.fault_429_rate
        if injected or not bucket.take(now):
            headers["X-Shopify-Shop-Api-Call-Limit"] = (
                f"{bucket.size if not injected else bucket.used(now)}/{bucket.size}"
            )
            if not (cfg.retry_after_omit_rate and store.rng.random() < cfg.retry_after_omit_rate):
                headers["Retry-After"] = "2.0"
            return json_response(
                {
                    "errors": f"Exceeded {cfg.leak_rate:g} calls per second for api client. "
                    "Reduce request rates to resume uninterrupted service."
                },
                429,
                headers,
            )
        headers["X-Shopify-Shop-Api-Call-Limit"] = f"{bucket.used(now)}/{bucket.size}"
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_response({"errors": exc.errors}, exc.status)
    except PageError as exc:
        response = json_response({"errors": exc.errors}, 400)
    response.headers.update(headers)
    return response


# --- helpers ------------------------------------------------------------------------------------


def parse_time(name: str, value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+"))
    except ValueError as exc:
        raise ApiError(400, {name: f"{name} is not a valid date/time"}) from exc
    if parsed.tzinfo is None:  # Shopify reads zone-less times in the shop's zone
        from sandbox.shopify.serialize import SHOP_TZ

        parsed = parsed.replace(tzinfo=SHOP_TZ)
    return int(parsed.timestamp())


def parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ApiError(400, {name: f"{name} must be an integer"}) from exc


def parse_ids(value: str) -> list[int]:
    return sorted({parse_int("ids", part) for part in value.split(",") if part.strip()})


def only_fields(item: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return item
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    return {k: item[k] for k in wanted if k in item}


def first_params(request: web.Request) -> dict[str, str]:
    return {k: request.query.get(k, "") for k in request.query}


Accept = Callable[[int], Any | None]
IdSource = Callable[[int | None, int | None, bool], Iterator[int]]


def paginate(
    request: web.Request,
    known_filters: tuple[str, ...],
    make_accept: Callable[[dict[str, str]], Accept],
    id_source: Callable[[dict[str, str]], IdSource],
    default_filters: dict[str, str] | None = None,
    newest_first: bool = False,
) -> tuple[list[Any], str | None, str | None]:
    """One page of records: (records, Link header, fields), Shopify's cursor rules applied.

    `newest_first` lists by descending id (customers and orders, as Shopify does) unless
    `since_id` is given, which always lists ascending ids."""
    params = first_params(request)
    limit = parse_limit(params.get("limit"))
    fields = params.get("fields") or None
    cursor: Cursor | None = None
    if "page_info" in params:
        check_page_info_params(params)
        cursor = decode_cursor(params["page_info"])
        filters = cursor.filters
    else:
        filters = dict(default_filters or {})
        filters.update({k: v for k, v in params.items() if k in known_filters and v != ""})
    accept = make_accept(filters)
    ids = id_source(filters)
    since = parse_int("since_id", filters["since_id"]) if "since_id" in filters else None

    def scan(after: int | None, before: int | None, descending: bool, want: int) -> list[Any]:
        if since is not None and (after is None or after < since):
            after = since
        found = []
        for ident in ids(after, before, descending):
            record = accept(ident)
            if record is not None:
                found.append(record)
                if len(found) >= want:
                    break
        return found

    # Newest first, as Shopify lists; `since_id` switches to ascending ids.
    desc = newest_first and since is None

    def forward(boundary: int | None, want: int) -> list[Any]:
        """Records after `boundary` in listing order."""
        return scan(None, boundary, True, want) if desc else scan(boundary, None, False, want)

    def backward(boundary: int, want: int) -> list[Any]:
        """Records before `boundary` in listing order, nearest first."""
        return scan(boundary, None, False, want) if desc else scan(None, boundary, True, want)

    if cursor is None or cursor.direction == "next":
        items = forward(cursor.boundary if cursor else None, limit + 1)
        has_next = len(items) > limit
        items = items[:limit]
        has_prev = cursor is not None and bool(items) and bool(backward(items[0].id, 1))
    else:
        items = backward(cursor.boundary, limit + 1)
        has_prev = len(items) > limit
        items = list(reversed(items[:limit]))
        has_next = bool(items) and bool(forward(items[-1].id, 1))
    prev = Cursor("prev", items[0].id, filters) if has_prev and items else None
    nxt = Cursor("next", items[-1].id, filters) if has_next and items else None
    base = f"{request.url.origin()}{request.path}"
    return items, link_header(base, limit, fields, prev, nxt), fields


def _time_bounds(filters: dict[str, str], prefix: str) -> tuple[int | None, int | None]:
    lo = filters.get(f"{prefix}_min")
    hi = filters.get(f"{prefix}_max")
    return (
        parse_time(f"{prefix}_min", lo) if lo else None,
        parse_time(f"{prefix}_max", hi) if hi else None,
    )


def _within(value: int, lo: int | None, hi: int | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


# --- customers ----------------------------------------------------------------------------------


def customer_accept(store: Store) -> Callable[[dict[str, str]], Accept]:
    def make(filters: dict[str, str]) -> Accept:
        c_lo, c_hi = _time_bounds(filters, "created_at")
        u_lo, u_hi = _time_bounds(filters, "updated_at")

        def accept(customer_id: int) -> Customer | None:
            # Cheap checks first: base customers' times come from a hash, not a full generation.
            if (c_lo is not None or c_hi is not None) and not _within(
                store.created_at(customer_id), c_lo, c_hi
            ):
                return None
            if (u_lo is not None or u_hi is not None) and not _within(
                store.updated_at(customer_id), u_lo, u_hi
            ):
                return None
            return store.customer(customer_id)

        return accept

    return make


def id_list_source(candidates: list[int]) -> IdSource:
    def source(after: int | None, before: int | None, descending: bool) -> Iterator[int]:
        chosen = [i for i in candidates if (after is None or i > after) and (before is None or i < before)]
        return iter(reversed(chosen) if descending else chosen)

    return source


def customer_ids_source(store: Store) -> Callable[[dict[str, str]], IdSource]:
    def make(filters: dict[str, str]) -> IdSource:
        if "ids" in filters:
            return id_list_source(parse_ids(filters["ids"]))
        return store.customer_ids

    return make


async def list_customers(request: web.Request) -> web.Response:
    require_scope(request, "read_customers")
    store = request.app[STORE]
    version = request.match_info["version"]
    items, link, fields = paginate(
        request, CUSTOMER_FILTERS, customer_accept(store), customer_ids_source(store), newest_first=True
    )
    body = {"customers": [only_fields(serialize_customer(c, version), fields) for c in items]}
    return json_response(body, headers={"Link": link} if link else None)


async def count_customers(request: web.Request) -> web.Response:
    require_scope(request, "read_customers")
    store = request.app[STORE]
    filters = {k: v for k, v in first_params(request).items() if k in CUSTOMER_FILTERS and v}
    if not filters:
        return json_response({"count": store.customer_count()})
    accept = customer_accept(store)(filters)
    ids = customer_ids_source(store)(filters)
    since = parse_int("since_id", filters["since_id"]) if "since_id" in filters else None
    count = sum(1 for i in ids(since, None, False) if accept(i) is not None)
    return json_response({"count": count})


async def get_customer(request: web.Request) -> web.Response:
    require_scope(request, "read_customers")
    store = request.app[STORE]
    customer = store.customer(int(request.match_info["id"]))
    if customer is None:
        return json_response({"errors": "Not Found"}, 404)
    fields = request.query.get("fields")
    return json_response(
        {"customer": only_fields(serialize_customer(customer, request.match_info["version"]), fields)}
    )


# --- orders -------------------------------------------------------------------------------------


def order_accept(store: Store) -> Callable[[dict[str, str]], Accept]:
    def make(filters: dict[str, str]) -> Accept:
        status = filters.get("status", "open")
        if status not in ("open", "closed", "cancelled", "any"):
            raise ApiError(400, {"status": "status must be one of open, closed, cancelled, any"})
        financial = filters.get("financial_status", "any")
        fulfillment = filters.get("fulfillment_status", "any")
        c_lo, c_hi = _time_bounds(filters, "created_at")
        u_lo, u_hi = _time_bounds(filters, "updated_at")
        p_lo, p_hi = _time_bounds(filters, "processed_at")
        if "read_all_orders" not in store.granted_scopes:  # Shopify hides older orders without it
            floor = store.now() - SIXTY_DAYS
            c_lo = floor if c_lo is None else max(c_lo, floor)

        def accept(order_id: int) -> Order | None:
            order = store.order(order_id)
            if order is None:
                return None
            if status == "open" and (order.closed_at or order.cancelled_at):
                return None
            if status == "closed" and not order.closed_at:
                return None
            if status == "cancelled" and not order.cancelled_at:
                return None
            if financial not in ("any", order.financial_status):
                return None
            if fulfillment not in ("any", order.fulfillment_status or "unshipped"):
                return None
            if not (
                _within(order.created_at, c_lo, c_hi)
                and _within(order.updated_at, u_lo, u_hi)
                and _within(order.processed_at, p_lo, p_hi)
            ):
                return None
            return order

        return accept

    return make


def order_ids_source(store: Store) -> Callable[[dict[str, str]], IdSource]:
    def make(filters: dict[str, str]) -> IdSource:
        candidates: list[int] | None = None
        if "customer_id" in filters:
            candidates = sorted(store.orders_of(parse_int("customer_id", filters["customer_id"])))
        if "ids" in filters:
            wanted = parse_ids(filters["ids"])
            candidates = wanted if candidates is None else sorted(set(candidates) & set(wanted))
        return store.order_ids if candidates is None else id_list_source(candidates)

    return make


def _order_body(store: Store, order: Order, version: str) -> dict[str, Any]:
    customer = store.customer(order.customer_id) if order.customer_id else None
    return serialize_order(order, customer, version)


async def list_orders(request: web.Request) -> web.Response:
    require_scope(request, "read_orders")
    store = request.app[STORE]
    version = request.match_info["version"]
    defaults = {"customer_id": request.match_info["id"]} if "id" in request.match_info else None
    items, link, fields = paginate(
        request, ORDER_FILTERS, order_accept(store), order_ids_source(store), defaults, newest_first=True
    )
    body = {"orders": [only_fields(_order_body(store, o, version), fields) for o in items]}
    return json_response(body, headers={"Link": link} if link else None)


async def count_orders(request: web.Request) -> web.Response:
    require_scope(request, "read_orders")
    store = request.app[STORE]
    filters = {k: v for k, v in first_params(request).items() if k in ORDER_FILTERS and v}
    accept = order_accept(store)(filters)
    ids = order_ids_source(store)(filters)
    return json_response({"count": sum(1 for i in ids(None, None, False) if accept(i) is not None)})


async def get_order(request: web.Request) -> web.Response:
    require_scope(request, "read_orders")
    store = request.app[STORE]
    order = store.order(int(request.match_info["id"]))
    if order is None or (
        "read_all_orders" not in store.granted_scopes and order.created_at < store.now() - SIXTY_DAYS
    ):
        return json_response({"errors": "Not Found"}, 404)
    fields = request.query.get("fields")
    return json_response(
        {"order": only_fields(_order_body(store, order, request.match_info["version"]), fields)}
    )


# --- products, shop, scopes ---------------------------------------------------------------------


async def get_product(request: web.Request) -> web.Response:
    require_scope(request, "read_products")
    product = request.app[STORE].product(int(request.match_info["id"]))
    if product is None:
        return json_response({"errors": "Not Found"}, 404)
    return json_response({"product": only_fields(serialize_product(product), request.query.get("fields"))})


async def list_products(request: web.Request) -> web.Response:
    require_scope(request, "read_products")
    store = request.app[STORE]
    ids = sorted(store.products)

    def make(_filters: dict[str, str]) -> Accept:
        return store.product

    items, link, fields = paginate(
        request,
        ("ids", "since_id"),
        make,
        lambda f: id_list_source(parse_ids(f["ids"]) if "ids" in f else ids),
    )
    body = {"products": [only_fields(serialize_product(p), fields) for p in items]}
    return json_response(body, headers={"Link": link} if link else None)


async def get_shop(request: web.Request) -> web.Response:
    return json_response({"shop": only_fields(request.app[STORE].shop_json(), request.query.get("fields"))})


async def access_scopes(request: web.Request) -> web.Response:
    scopes = sorted(request.app[STORE].scopes)
    return json_response({"access_scopes": [{"handle": s} for s in scopes]})


# --- webhooks -----------------------------------------------------------------------------------


async def list_webhooks(request: web.Request) -> web.Response:
    store = request.app[STORE]
    topic = request.query.get("topic")
    address = request.query.get("address")
    subs = [
        s
        for s in store.subscriptions.values()
        if (topic is None or s.topic == topic) and (address is None or s.address == address)
    ]
    return json_response({"webhooks": [serialize_subscription(s) for s in subs]})


async def count_webhooks(request: web.Request) -> web.Response:
    return json_response({"count": len(request.app[STORE].subscriptions)})


async def _webhook_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, {"error": "822: unexpected token"}) from exc
    webhook = body.get("webhook") if isinstance(body, dict) else None
    if not isinstance(webhook, dict):
        raise ApiError(400, {"webhook": "Required parameter missing or invalid"})
    return webhook


def _check_address(address: Any) -> str:
    if not isinstance(address, str) or not address:
        raise ApiError(422, {"address": ["can't be blank"]})
    if not address.startswith(("http://", "https://")):
        raise ApiError(422, {"address": ["protocol is not supported"]})
    return address


async def create_webhook(request: web.Request) -> web.Response:
    store = request.app[STORE]
    webhook = await _webhook_body(request)
    topic = webhook.get("topic")
    if not isinstance(topic, str) or topic not in TOPIC_SCOPES:
        raise ApiError(
            422, {"topic": [f"Invalid topic specified: {topic}. Topics allowed: {', '.join(TOPIC_SCOPES)}"]}
        )
    scope = TOPIC_SCOPES[topic]
    if scope is not None:
        require_scope(request, scope)
    address = _check_address(webhook.get("address"))
    if any(s.topic == topic and s.address == address for s in store.subscriptions.values()):
        raise ApiError(422, {"address": ["for this topic has already been taken"]})
    version = str(webhook.get("api_version") or request.match_info["version"])
    if not supported_version(version):
        raise ApiError(422, {"api_version": ["is not a valid API version"]})
    fields = webhook.get("fields") or []
    sub = store.add_subscription(topic, address, version, [str(f) for f in fields])
    return json_response({"webhook": serialize_subscription(sub)}, 201)


async def get_webhook(request: web.Request) -> web.Response:
    sub = request.app[STORE].subscriptions.get(int(request.match_info["id"]))
    if sub is None:
        return json_response({"errors": "Not Found"}, 404)
    return json_response({"webhook": serialize_subscription(sub)})


async def update_webhook(request: web.Request) -> web.Response:
    store = request.app[STORE]
    sub_id = int(request.match_info["id"])
    if sub_id not in store.subscriptions:
        return json_response({"errors": "Not Found"}, 404)
    webhook = await _webhook_body(request)
    changes: dict[str, Any] = {}
    if "address" in webhook:
        changes["address"] = _check_address(webhook["address"])
    if "fields" in webhook:
        changes["fields"] = tuple(str(f) for f in webhook["fields"] or [])
    sub = store.update_subscription(sub_id, **changes)
    return json_response({"webhook": serialize_subscription(sub)})


async def delete_webhook(request: web.Request) -> web.Response:
    if request.app[STORE].remove_subscription(int(request.match_info["id"])) is None:
        return json_response({"errors": "Not Found"}, 404)
    return json_response({})


async def not_found(request: web.Request) -> web.Response:
    return json_response({"errors": "Not Found"}, 404)


def create_app(store: Store) -> web.Application:
    """The whole simulator: Admin REST and GraphQL, plus the `/_sandbox/` control API."""
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
    api = "/admin/api/{version}"
    r = app.router
    r.add_get(f"{api}/shop.json", get_shop)
    r.add_get(f"{api}/customers.json", list_customers)
    r.add_get(f"{api}/customers/count.json", count_customers)
    r.add_get(api + r"/customers/{id:\d+}.json", get_customer)
    r.add_get(api + r"/customers/{id:\d+}/orders.json", list_orders)
    r.add_get(f"{api}/orders.json", list_orders)
    r.add_get(f"{api}/orders/count.json", count_orders)
    r.add_get(api + r"/orders/{id:\d+}.json", get_order)
    r.add_get(f"{api}/products.json", list_products)
    r.add_get(api + r"/products/{id:\d+}.json", get_product)
    r.add_get(f"{api}/webhooks.json", list_webhooks)
    r.add_post(f"{api}/webhooks.json", create_webhook)
    r.add_get(f"{api}/webhooks/count.json", count_webhooks)
    r.add_get(api + r"/webhooks/{id:\d+}.json", get_webhook)
    r.add_put(api + r"/webhooks/{id:\d+}.json", update_webhook)
    r.add_delete(api + r"/webhooks/{id:\d+}.json", delete_webhook)
    r.add_post(f"{api}/graphql.json", endpoint.handle)
    r.add_get("/admin/oauth/access_scopes.json", access_scopes)
    control.add_routes(app)
    oauth.add_routes(app)
    r.add_route("*", "/admin/{tail:.*}", not_found)
    return app


__all__ = ["COUNTERS", "CUSTOMER_BASE", "STORE", "TOPIC_SCOPES", "create_app"]
