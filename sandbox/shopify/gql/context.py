"""What every resolver of one GraphQL request sees (`info.context`), and the access rules they share.

`GraphQLConfig` holds the switches the control API changes at run time (`POST /_sandbox/config`
`{"graphql": {"protected_customer_data": 1}}`): the protected customer data level the app was
granted (0 none, 1 customer objects without name, email, phone and address, 2 all of them).
Refusals are `GraphQLError`s with `extensions.code = ACCESS_DENIED`, so the executor answers
partial `data` with `errors` the way Shopify does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from graphql import GraphQLError, GraphQLResolveInfo

from sandbox.shopify.graphql import BulkRegistry
from sandbox.shopify.store import Store

PROTECTED_DATA_DOC = "https://shopify.dev/docs/apps/launch/protected-customer-data"
SIXTY_DAYS = 60 * 86400
Info = GraphQLResolveInfo[Any]
# Level 2 fields (name, email, phone, address) by type; the rest of a customer needs Level 1.
PROTECTED_FIELDS: dict[str, frozenset[str]] = {
    "Customer": frozenset(
        {"firstName", "lastName", "email", "phone", "defaultEmailAddress", "defaultPhoneNumber",
         "defaultAddress", "addressesV2"}
    ),
    "Order": frozenset({"email", "phone", "shippingAddress", "billingAddress"}),
}  # fmt: skip


@dataclass
class GraphQLConfig:
    protected_customer_data: int = 2  # the Level granted: 0, 1 or 2


GQL_CONFIG: web.AppKey[GraphQLConfig] = web.AppKey("shopify_graphql_config", GraphQLConfig)


@dataclass
class Context:
    store: Store
    bulk: BulkRegistry
    config: GraphQLConfig
    version: str
    base_url: str
    search: list[dict[str, Any]] = field(default_factory=list)


def ctx(info: Info) -> Context:
    context: Context = info.context
    return context


def require_scope(info: Info, scope: str) -> None:
    """Shopify's answer to a field whose access scope the app lacks."""
    if scope not in ctx(info).store.granted_scopes:
        raise GraphQLError(
            f"Access denied for {info.field_name} field. Required access: `{scope}` access scope.",
            extensions={
                "code": "ACCESS_DENIED",
                "documentation": "https://shopify.dev/api/usage/access-scopes",
                "requiredAccess": f"`{scope}` access scope.",
            },
        )


def require_level(info: Info, level: int, what: str) -> None:
    """Protected customer data: Level 1 for customer objects, Level 2 for their personal fields."""
    if ctx(info).config.protected_customer_data >= level:
        return
    message = (
        f"This app is not approved to access the {what} object."
        if level == 1
        else f"This app is not approved to use the {what} field."
    )
    raise GraphQLError(
        f"{message} See {PROTECTED_DATA_DOC} for more details.",
        extensions={"code": "ACCESS_DENIED", "documentation": PROTECTED_DATA_DOC},
    )


def order_visible(store: Store, created_at: int) -> bool:
    """Without `read_all_orders` only the last 60 days of orders exist for the app."""
    return "read_all_orders" in store.granted_scopes or created_at >= store.now() - SIXTY_DAYS
