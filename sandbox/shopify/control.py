"""The `/_sandbox/` control API: mutate the store, tune faults, and inspect it (for people and `make run`).

No authentication: the sandbox listens on loopback. Every mutation route answers the changed
record in the store's current REST shape (latest version), or a 404/422 problem as JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiohttp import web

from sandbox.shopify import graphql
from sandbox.shopify.activity import ACTIVITY, Activity
from sandbox.shopify.appkeys import COUNTERS, GRAPHQL_COUNTERS, STORE
from sandbox.shopify.gql.context import GQL_CONFIG
from sandbox.shopify.serialize import (
    serialize_customer,
    serialize_order,
    serialize_product,
    serialize_subscription,
)
from sandbox.shopify.store import SandboxError

SHOW_VERSION = "2025-01"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="body is not JSON") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _customer_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/_sandbox/"):  # the Admin API answers its own errors
        passed: web.StreamResponse = await handler(request)
        return passed
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except SandboxError as exc:
        status = 404 if str(exc).startswith("no ") else 422
        return _json({"error": str(exc)}, status)
    except (TypeError, KeyError, ValueError) as exc:  # a missing, unexpected or malformed JSON field
        return _json({"error": f"{type(exc).__name__}: {exc}"}, 422)


def _customer(request: web.Request, customer: Any) -> web.Response:
    return _json({"customer": serialize_customer(customer, SHOW_VERSION)})


async def create_customer(request: web.Request) -> web.Response:
    customer = await request.app[STORE].create_customer(**await _body(request))
    return _json({"customer": serialize_customer(customer, SHOW_VERSION)}, 201)


async def update_customer(request: web.Request) -> web.Response:
    return _customer(
        request, await request.app[STORE].update_customer(_customer_id(request), **await _body(request))
    )


async def delete_customer(request: web.Request) -> web.Response:
    await request.app[STORE].delete_customer(_customer_id(request))
    return _json({})


async def email_consent(request: web.Request) -> web.Response:
    body = await _body(request)
    customer = await request.app[STORE].set_email_consent(
        _customer_id(request), str(body.get("state")), body.get("opt_in_level", "single_opt_in")
    )
    return _customer(request, customer)


async def sms_consent(request: web.Request) -> web.Response:
    body = await _body(request)
    customer = await request.app[STORE].set_sms_consent(
        _customer_id(request), str(body.get("state")), body.get("opt_in_level", "single_opt_in")
    )
    return _customer(request, customer)


async def change_email(request: web.Request) -> web.Response:
    body = await _body(request)
    return _customer(
        request, await request.app[STORE].change_email(_customer_id(request), str(body.get("email")))
    )


async def tags(request: web.Request) -> web.Response:
    body = await _body(request)
    store = request.app[STORE]
    customer_id = _customer_id(request)
    customer = store.customer(customer_id)
    if body.get("add"):
        customer = await store.add_tags(customer_id, [str(t) for t in body["add"]])
    if body.get("remove"):
        customer = await store.remove_tags(customer_id, [str(t) for t in body["remove"]])
    if customer is None:
        raise SandboxError(f"no customer {customer_id}")
    return _customer(request, customer)


async def place_order(request: web.Request) -> web.Response:
    body = await _body(request)
    store = request.app[STORE]
    order = await store.place_order(int(body["customer_id"]), paid=bool(body.get("paid", True)))
    customer = store.customer(order.customer_id) if order.customer_id else None
    return _json({"order": serialize_order(order, customer, SHOW_VERSION)}, 201)


async def update_product(request: web.Request) -> web.Response:
    body = await _body(request)
    product = await request.app[STORE].update_product(
        int(request.match_info["id"]), title=body.get("title"), price=body.get("price")
    )
    return _json({"product": serialize_product(product)})


async def privacy(request: web.Request) -> web.Response:
    store = request.app[STORE]
    kind = request.match_info["kind"]
    body = await _body(request)
    if kind == "customers-redact":
        await store.redact_customer(int(body["customer_id"]))
    elif kind == "customers-data-request":
        await store.request_customer_data(int(body["customer_id"]))
    elif kind == "shop-redact":
        await store.redact_shop()
    elif kind == "app-uninstalled":
        await store.uninstall()
    else:
        return _json({"error": f"unknown privacy action {kind}"}, 404)
    return _json({})


async def state(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return _json(
        {
            "domain": store.domain,
            "seed": store.seed,
            "size": store.size,
            "customers": store.customer_count(),
            "changed_customers": len(store.overrides),
            "deleted_customers": len(store.deleted),
            "new_orders": len(store.new_order_ids),
            "products": len(store.products),
            "scopes": sorted(store.scopes),
            "subscriptions": [serialize_subscription(s) for s in store.subscriptions.values()],
            "rate_limit": dataclasses.asdict(store.rate_limit),
            "graphql": dataclasses.asdict(request.app[GQL_CONFIG]),
            "bulk": request.app[graphql.BULK].describe_counts(store.monotonic()),
            "delivery": {
                k: v for k, v in dataclasses.asdict(store.deliverer.config).items() if not k.startswith("_")
            },
            "deliveries_pending": store.deliverer.pending,
            "activity": request.app[ACTIVITY].describe(),
        }
    )


async def requests(request: web.Request) -> web.Response:
    counters = request.app[COUNTERS]
    return _json(
        [{"route": route, "status": status, "count": n} for (route, status), n in sorted(counters.items())]
    )


async def graphql_requests(request: web.Request) -> web.Response:
    counters = request.app[GRAPHQL_COUNTERS]
    return _json(
        [{"operation": op, "field": field, "count": n} for (op, field), n in sorted(counters.items())]
    )


async def deliveries(request: web.Request) -> web.Response:
    records = list(request.app[STORE].deliverer.records.values())
    topic = request.query.get("topic")
    if topic:
        records = [r for r in records if r.topic == topic]
    limit = int(request.query.get("limit", "200"))
    return _json([r.summary() for r in records[-limit:]])


async def configure(request: web.Request) -> web.Response:
    """`{"rate_limit": {...}, "delivery": {...}, "graphql": {...}, "scopes": [...], "bulk":
    {"objects_per_second": N}}`: change settings at run time."""
    store = request.app[STORE]
    body = await _body(request)
    sections = (
        ("rate_limit", store.rate_limit),
        ("delivery", store.deliverer.config),
        ("graphql", request.app[GQL_CONFIG]),
    )
    for section, target in sections:
        for key, value in (body.get(section) or {}).items():
            if not hasattr(target, key):
                return _json({"error": f"unknown {section} setting {key}"}, 422)
            current = getattr(target, key)
            setattr(target, key, tuple(value) if isinstance(current, tuple) else type(current)(value))
    if "scopes" in body:
        store.scopes = {str(s) for s in body["scopes"]}
    bulk = body.get("bulk") or {}
    if "objects_per_second" in bulk:  # how fast a bulk export 'runs' (slower: operations overlap)
        request.app[graphql.BULK].objects_per_second = max(0.001, float(bulk["objects_per_second"]))
    return await state(request)


async def activity(request: web.Request) -> web.Response:
    """`{"rate": 5}` starts (or retunes) the activity generator; `{"rate": 0}` stops it."""
    body = await _body(request)
    runner: Activity = request.app[ACTIVITY]
    rate = float(body.get("rate", 0))
    if rate > 0:
        runner.rate = rate
        runner.start()
    else:
        await runner.stop()
    return _json(runner.describe())


def add_routes(app: web.Application) -> None:
    app.middlewares.append(errors)
    app[ACTIVITY] = Activity(app[STORE])
    r = app.router
    r.add_get("/_sandbox/state", state)
    r.add_get("/_sandbox/requests", requests)
    r.add_get("/_sandbox/graphql_requests", graphql_requests)
    r.add_get("/_sandbox/deliveries", deliveries)
    r.add_post("/_sandbox/config", configure)
    r.add_post("/_sandbox/activity", activity)
    r.add_post("/_sandbox/customers", create_customer)
    r.add_patch(r"/_sandbox/customers/{id:\d+}", update_customer)
    r.add_delete(r"/_sandbox/customers/{id:\d+}", delete_customer)
    r.add_post(r"/_sandbox/customers/{id:\d+}/email_consent", email_consent)
    r.add_post(r"/_sandbox/customers/{id:\d+}/sms_consent", sms_consent)
    r.add_post(r"/_sandbox/customers/{id:\d+}/email", change_email)
    r.add_post(r"/_sandbox/customers/{id:\d+}/tags", tags)
    r.add_post("/_sandbox/orders", place_order)
    r.add_patch(r"/_sandbox/products/{id:\d+}", update_product)
    r.add_post("/_sandbox/privacy/{kind}", privacy)
    r.add_get(r"/_sandbox/bulk/{number:\d+}.jsonl", graphql.download)
