"""Resolvers for the app's side of the store: shop, installation, webhook subscriptions, bulk operations, `node`.

Mutations answer Shopify's payloads: a `userErrors` list that is empty on success, and the
changed object (or the deleted id). Bad input changes nothing. `node(id:)` and `nodes(ids:)`
find any record kind this sandbox serves by its global id.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from sandbox.shopify.gql import resolvers
from sandbox.shopify.gql.bulk_query import plan_export
from sandbox.shopify.gql.connection import Key, connection, list_source
from sandbox.shopify.gql.context import Info, ctx, require_scope
from sandbox.shopify.gql.shapes import parse_gid, subscription_node, topic_enum
from sandbox.shopify.gql.topics import PROTECTED_TOPICS, TOPIC_SCOPES, topic_of_enum
from sandbox.shopify.graphql import describe
from sandbox.shopify.serialize import fmt_utc, gid, supported_version
from sandbox.shopify.store import SHOP_ID

PLAN_NAMES = {
    "standard": "Basic",
    "advanced": "Advanced",
    "plus": "Shopify Plus",
    "enterprise": "Shopify Plus",
}


def shop(_root: Any, info: Info) -> dict[str, Any]:
    store = ctx(info).store
    plan = store.rate_limit.plan
    return {
        "id": gid("Shop", SHOP_ID),
        "name": store.name,
        "email": "owner@demo-store.example.se",
        "contactEmail": "hej@demo-store.example.se",
        "myshopifyDomain": store.domain,
        "currencyCode": "SEK",
        "ianaTimezone": "Europe/Stockholm",
        "plan": {
            "publicDisplayName": PLAN_NAMES.get(plan, plan),
            "shopifyPlus": plan in ("plus", "enterprise"),
            "partnerDevelopment": False,
        },
        "createdAt": fmt_utc(store.anchor - 5 * 365 * 86400),
        "updatedAt": fmt_utc(store.anchor),
        "shopOwnerName": "Åsa Sandström",
    }


def current_app_installation(_root: Any, info: Info) -> dict[str, Any]:
    scopes = sorted(ctx(info).store.scopes)
    return {
        "id": gid("AppInstallation", 1),
        "accessScopes": [{"handle": s, "description": s.replace("_", " ").capitalize()} for s in scopes],
    }


# --- webhook subscriptions ------------------------------------------------------------------------


def webhook_subscriptions(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    topics = set(args.get("topics") or ())
    uri = args.get("uri") or args.get("callbackUrl")
    keyed: list[tuple[Key, Any]] = [
        ((sub.id,), sub)
        for sub in ctx(info).store.subscriptions.values()
        if (not topics or topic_enum(sub.topic) in topics) and (uri is None or sub.address == uri)
    ]
    keyed.sort(key=lambda kv: kv[0])
    page = {k: args[k] for k in resolvers.PAGE_ARGS if args.get(k) is not None}
    return connection(list_source(keyed), subscription_node, **page)


def webhook_subscription(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    parsed = parse_gid(id, "WebhookSubscription")
    sub = ctx(info).store.subscriptions.get(parsed[1]) if parsed else None
    return subscription_node(sub) if sub is not None else None


def _user_error(field: list[str] | None, message: str) -> dict[str, Any]:
    return {"field": field, "message": message}


def webhook_subscription_create(
    _root: Any,
    info: Info,
    topic: str,
    webhookSubscription: dict[str, Any],
) -> dict[str, Any]:
    context = ctx(info)
    store = context.store
    name = topic_of_enum(topic)
    address = webhookSubscription.get("uri") or webhookSubscription.get("callbackUrl")
    field = ["webhookSubscription", "uri" if "uri" in webhookSubscription else "callbackUrl"]
    errors: list[dict[str, Any]] = []
    scope = TOPIC_SCOPES.get(name) if name else None
    if name is None:
        errors.append(_user_error(["topic"], f"Topic {topic} is not supported by this sandbox."))
    elif scope is not None and scope not in store.granted_scopes:
        errors.append(_user_error(["topic"], f"Access denied for topic {name}: it needs the {scope} scope."))
    elif name in PROTECTED_TOPICS and context.config.protected_customer_data < 1:
        errors.append(
            _user_error(
                ["topic"],
                f"You do not have permission to create or update webhooks with {name} topic. "
                "This topic contains protected customer data.",
            )
        )
    elif not isinstance(address, str) or not address:
        errors.append(_user_error(field, "Address can't be blank"))
    elif not address.startswith(("https://", "http://")):
        errors.append(_user_error(field, "Address is invalid"))
    elif any(s.topic == name and s.address == address for s in store.subscriptions.values()):
        errors.append(_user_error(field, "Address for this topic has already been taken"))
    if errors or name is None or not isinstance(address, str):
        return {"webhookSubscription": None, "userErrors": errors}
    version = context.version if supported_version(context.version) else "2026-10"
    fields = [str(f) for f in webhookSubscription.get("includeFields") or []]
    sub = store.add_subscription(name, address, version, fields)
    return {"webhookSubscription": subscription_node(sub), "userErrors": []}


def webhook_subscription_delete(_root: Any, info: Info, id: str) -> dict[str, Any]:
    parsed = parse_gid(id, "WebhookSubscription")
    removed = ctx(info).store.remove_subscription(parsed[1]) if parsed else None
    if removed is None:
        return {
            "deletedWebhookSubscriptionId": None,
            "userErrors": [_user_error(["id"], "Webhook subscription does not exist")],
        }
    return {"deletedWebhookSubscriptionId": id, "userErrors": []}


# --- bulk operations ------------------------------------------------------------------------------


def bulk_operation_run_query(
    _root: Any,
    info: Info,
    query: str,
    groupObjects: bool = False,
) -> dict[str, Any]:
    context = ctx(info)
    store, registry = context.store, context.bulk
    require_scope(info, "read_customers")
    now = store.monotonic()
    running = registry.running(now)
    limit = registry.concurrent_limit(context.version)
    if len(running) >= limit:
        message = (
            f"A bulk query operation for this app and shop is already in progress: {running[-1].gid}."
            if limit == 1
            else f"Bulk operations limit reached: {limit} bulk query operations are already running for this app and shop."
        )
        code = "OPERATION_IN_PROGRESS" if limit == 1 else "LIMIT_REACHED"
        registry.refused += 1
        return {"bulkOperation": None, "userErrors": [{"field": None, "message": message, "code": code}]}
    export = plan_export(info.schema, query)
    if export.errors:
        return {"bulkOperation": None, "userErrors": export.errors}
    denied = export.protected and context.config.protected_customer_data < 2
    op = registry.start(
        store, query, export.selections, export.fragments, "ACCESS_DENIED" if denied else None
    )
    return {"bulkOperation": describe(op, context.base_url, now), "userErrors": []}


def current_bulk_operation(_root: Any, info: Info, type: str = "QUERY") -> dict[str, Any] | None:
    context = ctx(info)
    op = context.bulk.latest() if type == "QUERY" else None
    return describe(op, context.base_url, context.store.monotonic()) if op is not None else None


def bulk_operation(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    context = ctx(info)
    parsed = parse_gid(id, "BulkOperation")
    op = context.bulk.operations.get(parsed[1]) if parsed else None
    return describe(op, context.base_url, context.store.monotonic()) if op is not None else None


# --- node -----------------------------------------------------------------------------------------

FINDERS = {
    "Customer": resolvers.customer,
    "Order": resolvers.order,
    "Product": resolvers.product,
    "ProductVariant": resolvers.product_variant,
    "WebhookSubscription": webhook_subscription,
    "BulkOperation": bulk_operation,
}


def node_by_id(info: Info, value: str) -> dict[str, Any] | None:
    parsed = parse_gid(value)
    if parsed is None:
        raise GraphQLError(
            f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"}
        )
    finder = FINDERS.get(parsed[0])
    result: dict[str, Any] | None = finder(None, info, id=value) if finder else None
    return result


def node(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    return node_by_id(info, id)


def nodes(_root: Any, info: Info, ids: list[str]) -> list[dict[str, Any] | None]:
    if len(ids) > 250:
        raise GraphQLError("The ids argument accepts at most 250 ids.")
    return [node_by_id(info, value) for value in ids]


def type_of_node(obj: dict[str, Any], *_: Any) -> str:
    """The concrete type behind `Node` (and `Media`), read from the record's global id."""
    parsed = parse_gid(str(obj.get("id", "")))
    return parsed[0] if parsed else "Customer"
