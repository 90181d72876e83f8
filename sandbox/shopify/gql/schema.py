"""The executable schema: the developers' SDL (`admin.graphql`) with the resolvers bound to it.

`SCHEMA` is built once with `graphql.build_schema`; root fields, connection fields and links get
the resolvers of `resolvers.py` and `admin_resolvers.py`, every other field the executor's
default (a dict key of the same name). Protected customer data fields (`context.PROTECTED_FIELDS`)
are wrapped so an app without Level 2 gets `null` there and an `ACCESS_DENIED` error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema, build_schema
from graphql.execution import default_field_resolver

from sandbox.shopify.gql import admin_resolvers as admin
from sandbox.shopify.gql import resolvers as r
from sandbox.shopify.gql.context import PROTECTED_FIELDS, Info, require_level

SDL_PATH = Path(__file__).with_name("admin.graphql")

RESOLVERS: dict[str, Callable[..., Any]] = {
    "QueryRoot.customer": r.customer,
    "QueryRoot.customers": r.customers,
    "QueryRoot.customersCount": r.customers_count,
    "QueryRoot.order": r.order,
    "QueryRoot.orders": r.orders,
    "QueryRoot.product": r.product,
    "QueryRoot.products": r.products,
    "QueryRoot.productVariant": r.product_variant,
    "QueryRoot.node": admin.node,
    "QueryRoot.nodes": admin.nodes,
    "QueryRoot.webhookSubscription": admin.webhook_subscription,
    "QueryRoot.webhookSubscriptions": admin.webhook_subscriptions,
    "QueryRoot.currentAppInstallation": admin.current_app_installation,
    "QueryRoot.shop": admin.shop,
    "QueryRoot.currentBulkOperation": admin.current_bulk_operation,
    "QueryRoot.bulkOperation": admin.bulk_operation,
    "Mutation.bulkOperationRunQuery": admin.bulk_operation_run_query,
    "Mutation.webhookSubscriptionCreate": admin.webhook_subscription_create,
    "Mutation.webhookSubscriptionDelete": admin.webhook_subscription_delete,
    "Customer.addressesV2": r.customer_addresses,
    "Customer.lastOrder": r.customer_last_order,
    "Customer.orders": r.customer_orders,
    "Order.customer": r.order_customer,
    "Order.lineItems": r.order_line_items,
    "LineItem.product": r.line_item_product,
    "LineItem.variant": r.line_item_variant,
    "Product.variants": r.product_variants,
    "ProductVariant.product": r.variant_product,
}


def _protected(resolve: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(obj: Any, info: Info, **args: Any) -> Any:
        require_level(info, 2, info.field_name)
        return resolve(obj, info, **args)

    return guarded


def _error_type(obj: Any, *_: Any) -> str:
    return "BulkOperationUserError" if "code" in obj else "UserError"


def build() -> GraphQLSchema:
    schema = build_schema(SDL_PATH.read_text(encoding="utf-8"))
    for path, resolve in RESOLVERS.items():
        type_name, field_name = path.split(".")
        owner = schema.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType), path
        owner.fields[field_name].resolve = resolve
    for type_name, names in PROTECTED_FIELDS.items():
        owner = schema.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType), type_name
        for name in names:
            definition = owner.fields[name]
            definition.resolve = _protected(definition.resolve or default_field_resolver)
    for name in ("Node", "Media"):
        interface = schema.get_type(name)
        assert isinstance(interface, GraphQLInterfaceType)
        interface.resolve_type = admin.type_of_node
    displayable = schema.get_type("DisplayableError")
    assert isinstance(displayable, GraphQLInterfaceType)
    displayable.resolve_type = _error_type
    return schema


SCHEMA = build()
