"""Resolvers for the store's records: customers, orders, line items, products, variants, `node`.

Each resolver checks the access scope (and, for customers, the protected data level), reads the
`Store` and returns the dicts of `shapes.py`. Connections go through `connection.connection`
with Shopify's sort keys (`ID`, `UPDATED_AT`, `CREATED_AT`, `PROCESSED_AT`; any other sorts by
id) and the `query:` filters of `search.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sandbox.shopify.gql import search
from sandbox.shopify.gql.connection import Key, Source, connection, list_source
from sandbox.shopify.gql.context import Info, ctx, order_visible, require_level, require_scope
from sandbox.shopify.gql.shapes import (
    address_node,
    customer_node,
    line_item_node,
    order_node,
    parse_gid,
    product_node,
    variant_node,
)
from sandbox.shopify.models import Customer, Order
from sandbox.shopify.store import Store

Resolver = Callable[..., Any]
CUSTOMER_FIELDS = frozenset({"id", "updated_at", "created_at", "email", "tag", "state"})
ORDER_FIELDS = frozenset(
    {"id", "updated_at", "created_at", "processed_at", "customer_id", "financial_status", "status", "email"}
)
PRODUCT_FIELDS = frozenset({"id", "updated_at", "created_at", "title", "status", "vendor", "product_type"})
PAGE_ARGS = ("first", "last", "after", "before", "reverse")


def _page(args: dict[str, Any]) -> dict[str, Any]:
    return {k: args.get(k) for k in PAGE_ARGS if args.get(k) is not None}


def _search(info: Info, query: str | None, known: frozenset[str]) -> list[search.Term]:
    parsed = search.parse(query, known)
    if parsed.warnings:
        ctx(info).search.append({"path": [info.field_name], "query": query, "warnings": parsed.warnings})
    return parsed.terms


# --- customers ------------------------------------------------------------------------------------


def _customer_match(store: Store, terms: list[search.Term]) -> Callable[[int], Customer | None]:
    def match(customer_id: int) -> Customer | None:
        for term in terms:  # cheap checks first: times of unchanged customers come from a hash
            if term.field == "updated_at" and not term.compare(
                store.updated_at(customer_id), search.parse_time(term.value)
            ):
                return None
            if term.field == "created_at" and not term.compare(
                store.created_at(customer_id), search.parse_time(term.value)
            ):
                return None
            if term.field == "id" and not term.compare(customer_id, search.numeric_id(term.value)):
                return None
        customer = store.customer(customer_id)
        if customer is None:
            return None
        for term in terms:
            if term.field == "email" and not term.compare((customer.email or "").lower(), term.value.lower()):
                return None
            if term.field == "tag" and (term.value in customer.tags) == term.negated:
                return None
            if term.field == "state" and not term.compare(customer.state, term.value.lower()):
                return None
        return customer

    return match


def customer_source(store: Store, terms: list[search.Term], sort_key: str) -> Source:
    match = _customer_match(store, terms)
    if sort_key in ("UPDATED_AT", "CREATED_AT"):
        stamp = store.updated_at if sort_key == "UPDATED_AT" else store.created_at
        keyed: list[tuple[Key, Any]] = []
        for customer_id in store.customer_ids():
            customer = match(customer_id)
            if customer is not None:
                keyed.append(((stamp(customer_id), customer_id), customer))
        keyed.sort(key=lambda kv: kv[0])
        return list_source(keyed)

    def by_id(boundary: Key | None, descending: bool) -> Iterator[tuple[Key, Any]]:
        edge = None if boundary is None else int(boundary[-1])
        ids = (
            store.customer_ids(before=edge, descending=True) if descending else store.customer_ids(after=edge)
        )
        for customer_id in ids:
            customer = match(customer_id)
            if customer is not None:
                yield (customer_id,), customer

    return by_id


def customers(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    require_scope(info, "read_customers")
    require_level(info, 1, "Customer")
    store = ctx(info).store
    terms = _search(info, args.get("query"), CUSTOMER_FIELDS)
    source = customer_source(store, terms, args.get("sortKey") or "ID")
    return connection(source, customer_node, **_page(args))


def customer(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    require_scope(info, "read_customers")
    require_level(info, 1, "Customer")
    parsed = parse_gid(id, "Customer")
    found = ctx(info).store.customer(parsed[1]) if parsed else None
    return customer_node(found) if found is not None else None


def customers_count(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    require_scope(info, "read_customers")
    store = ctx(info).store
    terms = _search(info, args.get("query"), CUSTOMER_FIELDS)
    limit = args.get("limit")
    if not terms:
        total = store.customer_count()
    else:
        match = _customer_match(store, terms)
        total = sum(1 for i in store.customer_ids() if match(i) is not None)
    if limit is not None and total > limit:
        return {"count": limit, "precision": "AT_LEAST"}
    return {"count": total, "precision": "EXACT"}


def customer_last_order(obj: dict[str, Any], info: Info) -> dict[str, Any] | None:
    require_scope(info, "read_orders")
    model: Customer = obj["_model"]
    order = ctx(info).store.order(model.last_order_id) if model.last_order_id else None
    return (
        order_node(order) if order is not None and order_visible(ctx(info).store, order.created_at) else None
    )


def customer_addresses(obj: dict[str, Any], info: Info, **args: Any) -> dict[str, Any]:
    require_level(info, 2, "addressesV2")
    model: Customer = obj["_model"]
    keyed = [((a.id,), a) for a in sorted(model.addresses, key=lambda a: a.id)]
    return connection(list_source(keyed), address_node, **_page(args))


# --- orders ---------------------------------------------------------------------------------------


_ORDER_STAMP: dict[str, Callable[[Order], int]] = {
    "UPDATED_AT": lambda o: o.updated_at,
    "CREATED_AT": lambda o: o.created_at,
    "PROCESSED_AT": lambda o: o.processed_at,
}


def _order_ok(order: Order, terms: list[search.Term]) -> bool:
    for term in terms:
        name = term.field
        if name in ("updated_at", "created_at", "processed_at"):
            if not term.compare(getattr(order, name), search.parse_time(term.value)):
                return False
        elif (
            (name == "id" and not term.compare(order.id, search.numeric_id(term.value)))
            or (name == "customer_id" and not term.compare(order.customer_id, search.numeric_id(term.value)))
            or (name == "financial_status" and not term.compare(order.financial_status, term.value.lower()))
            or (name == "email" and not term.compare((order.email or "").lower(), term.value.lower()))
        ):
            return False
        elif name == "status":
            state = "cancelled" if order.cancelled_at else "closed" if order.closed_at else "open"
            if term.value.lower() != "any" and not term.compare(state, term.value.lower()):
                return False
    return True


def order_connection(info: Info, candidates: list[int], args: dict[str, Any]) -> dict[str, Any]:
    store = ctx(info).store
    terms = _search(info, args.get("query"), ORDER_FIELDS)
    stamp = _ORDER_STAMP.get(args.get("sortKey") or "ID")
    keyed: list[tuple[Key, Any]] = []
    for order_id in candidates:
        order = store.order(order_id)
        if order is None or not order_visible(store, order.created_at) or not _order_ok(order, terms):
            continue
        keyed.append(((stamp(order), order.id) if stamp else (order.id,), order))
    keyed.sort(key=lambda kv: kv[0])
    return connection(list_source(keyed), order_node, **_page(args))


def orders(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    require_scope(info, "read_orders")
    store = ctx(info).store
    wanted = [
        t
        for t in search.parse(args.get("query"), ORDER_FIELDS).terms
        if t.field == "customer_id" and not t.op
    ]
    candidates = store.orders_of(search.numeric_id(wanted[0].value)) if wanted else list(store.order_ids())
    return order_connection(info, candidates, args)


def customer_orders(obj: dict[str, Any], info: Info, **args: Any) -> dict[str, Any]:
    require_scope(info, "read_orders")
    model: Customer = obj["_model"]
    return order_connection(info, ctx(info).store.orders_of(model.id), args)


def order(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    require_scope(info, "read_orders")
    store = ctx(info).store
    parsed = parse_gid(id, "Order")
    found = store.order(parsed[1]) if parsed else None
    if found is None or not order_visible(store, found.created_at):
        return None
    return order_node(found)


def order_customer(obj: dict[str, Any], info: Info) -> dict[str, Any] | None:
    require_scope(info, "read_customers")
    require_level(info, 1, "Customer")
    model: Order = obj["_model"]
    found = ctx(info).store.customer(model.customer_id) if model.customer_id else None
    return customer_node(found) if found is not None else None


def order_line_items(obj: dict[str, Any], info: Info, **args: Any) -> dict[str, Any]:
    model: Order = obj["_model"]
    keyed = [((n,), item) for n, item in enumerate(model.line_items)]
    return connection(list_source(keyed), lambda item: line_item_node(item, model.currency), **_page(args))


def line_item_product(obj: dict[str, Any], info: Info) -> dict[str, Any] | None:
    require_scope(info, "read_products")
    found = ctx(info).store.product(obj["_model"].product_id)
    return product_node(found) if found is not None else None


def line_item_variant(obj: dict[str, Any], info: Info) -> dict[str, Any] | None:
    require_scope(info, "read_products")
    found = ctx(info).store.product(obj["_model"].product_id)
    variant = next((v for v in found.variants if v.id == obj["_model"].variant_id), None) if found else None
    return variant_node(variant, found) if variant is not None and found is not None else None


# --- products -------------------------------------------------------------------------------------


def products(_root: Any, info: Info, **args: Any) -> dict[str, Any]:
    require_scope(info, "read_products")
    terms = _search(info, args.get("query"), PRODUCT_FIELDS)
    sort = args.get("sortKey") or "ID"
    keyed: list[tuple[Key, Any]] = []
    for product in ctx(info).store.products.values():
        ok = True
        for term in terms:
            if term.field in ("updated_at", "created_at"):
                ok = term.compare(getattr(product, term.field), search.parse_time(term.value))
            elif term.field == "id":
                ok = term.compare(product.id, search.numeric_id(term.value))
            else:
                ok = term.compare(str(getattr(product, term.field)).lower(), term.value.lower())
            if not ok:
                break
        if ok:
            stamp = {"UPDATED_AT": product.updated_at, "CREATED_AT": product.created_at}.get(sort)
            keyed.append(((stamp, product.id) if stamp is not None else (product.id,), product))
    keyed.sort(key=lambda kv: kv[0])
    return connection(list_source(keyed), product_node, **_page(args))


def product(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    require_scope(info, "read_products")
    parsed = parse_gid(id, "Product")
    found = ctx(info).store.product(parsed[1]) if parsed else None
    return product_node(found) if found is not None else None


def product_variant(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    require_scope(info, "read_products")
    parsed = parse_gid(id, "ProductVariant")
    if parsed is None:
        return None
    for item in ctx(info).store.products.values():
        for variant in item.variants:
            if variant.id == parsed[1]:
                return variant_node(variant, item)
    return None


def product_variants(obj: dict[str, Any], info: Info, **args: Any) -> dict[str, Any]:
    model = obj["_model"]
    keyed = [((v.position, v.id), v) for v in model.variants]
    keyed.sort(key=lambda kv: kv[0])
    return connection(list_source(keyed), lambda v: variant_node(v, model), **_page(args))


def variant_product(obj: dict[str, Any], info: Info) -> dict[str, Any]:
    return product_node(obj["_product"])
