"""What the order tests share: placing orders the sandbox store has no helper for (a chosen set
of lines, guests), an independent oracle of the events an order must produce, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sandbox.shopify.data import ORDER_BASE, ORDER_SLOTS
from sandbox.shopify.models import LineItem, Order
from sandbox.shopify.serialize import serialize_order
from sandbox.shopify.store import Store
from tests.e2e.harness import DOMAIN, Pipeline

LINE_BASE = 90_000_000_000_000  # far from the store's own line item ids


async def place_custom_order(
    store: Store,
    customer_id: int | None,
    lines: Sequence[tuple[int, int]],
    *,
    paid: bool = True,
    email: str | None = None,
    cancelled: bool = False,
) -> Order:
    """An order of `(product_id, quantity)` lines (first variant of each), as `place_order`
    makes it (`orders/create`, then `orders/paid` when paid), registered so the Orders API
    lists it. A guest order when `customer_id` is None; `cancelled`: already cancelled when
    its webhooks are delivered (a late delivery)."""
    customer = store.customer(customer_id) if customer_id is not None else None
    seq = len(store.new_order_ids)
    order_id = ORDER_BASE + store.size * ORDER_SLOTS + seq
    items = []
    for n, (product_id, quantity) in enumerate(lines):
        product = store.products[product_id]
        variant = product.variants[0]
        items.append(
            LineItem(
                id=LINE_BASE + seq * 10_000 + n,
                product_id=product.id,
                variant_id=variant.id,
                title=product.title,
                variant_title=variant.title,
                sku=variant.sku,
                vendor=product.vendor,
                quantity=quantity,
                price_cents=variant.price_cents,
                grams=variant.grams,
            )
        )
    now = store.now()
    order = Order(
        id=order_id,
        number=1001 + store.size * ORDER_SLOTS + seq,
        customer_id=customer_id,
        email=customer.email if customer else email,
        phone=customer.phone if customer else None,
        created_at=now,
        updated_at=now,
        processed_at=now,
        closed_at=None,
        cancelled_at=now if cancelled else None,
        cancel_reason="customer" if cancelled else None,
        financial_status="paid" if paid else "pending",
        fulfillment_status=None,
        currency="SEK",
        line_items=tuple(items),
        discount_codes=(),
        shipping_cents=4900,
        tax_cents=sum(i.price_cents * i.quantity for i in items) // 5,
        shipping_address=None,
        billing_address=None,
        buyer_accepts_marketing=False,
    )
    store.order_overrides[order_id] = order
    store.new_order_ids.append(order_id)
    if customer_id is not None:
        store.extra_orders.setdefault(customer_id, []).append(order_id)

    def body(version: str) -> dict[str, Any]:
        return serialize_order(order, customer, version, for_webhook=True)

    topics = ["orders/create", "orders/paid"] if paid else ["orders/create"]
    await store.emit([(topic, body) for topic in topics])
    return order


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def money(cents: int) -> float:
    return cents / 100


def expected_events(
    store: Store, order: Order, order_version: str, line_version: str
) -> list[dict[str, Any]]:
    """What APSIS must hold for the order in one section, computed from the store's records."""
    when = rfc3339(order.processed_at)
    out: list[dict[str, Any]] = [
        {
            "version_id": order_version,
            "event_time": when,
            "data": {
                "order_id": str(order.id),
                "order_name": order.name,
                "order_number": order.number,
                "created_at": rfc3339(order.created_at),
                "currency": order.currency,
                "total": money(order.total_cents),
                "subtotal": money(order.subtotal_cents),
                "discounts": money(order.discount_cents),
                "shipping": money(order.shipping_cents),
                "tax": money(order.tax_cents),
                "item_count": sum(i.quantity for i in order.line_items),
                "financial_status": order.financial_status,
                "discount_codes": ", ".join(c.code for c in order.discount_codes) or None,
            },
        }
    ]
    for item in order.line_items:
        product = store.products[item.product_id]
        out.append(
            {
                "version_id": line_version,
                "event_time": when,
                "data": {
                    "order_id": str(order.id),
                    "product_id": str(item.product_id),
                    "variant_id": str(item.variant_id),
                    "sku": item.sku or None,
                    "title": item.title,
                    "variant_title": item.variant_title or None,
                    "quantity": item.quantity,
                    "price": money(item.price_cents),
                    "line_total": money(item.price_cents * item.quantity),
                    "vendor": product.vendor,
                    "product_type": product.product_type or None,
                    "product_url": f"https://{DOMAIN}/products/{product.handle}",
                    "image_url": product.images[0].src if product.images else None,
                },
            }
        )
    return out


def events_of(p: Pipeline, profile_key: str, section: str) -> list[dict[str, Any]]:
    profile = p.account.profile(p.shop.apsis.keyspace, profile_key)
    return [] if profile is None else list(profile.events.get(section, []))


def event_posts(p: Pipeline, profile_key: str | None = None, section: str | None = None) -> int:
    return sum(
        1
        for w in p.account.writes_of("events")
        if (profile_key is None or w.params.get("profile_key") == profile_key)
        and (section is None or w.params.get("section") == section)
    )


def product_gets(p: Pipeline) -> int:
    """Product reads: the client's `products` queries (`nodes(ids:)`), as the sandbox counted them."""
    return sum(n for (operation, _field), n in p.shopify.graphql_counts().items() if operation == "products")


def customer_gets(p: Pipeline) -> int:
    """Reads of one customer by id: the client's `customer` queries."""
    return sum(
        n
        for (operation, field), n in p.shopify.graphql_counts().items()
        if operation == "customer" and field == "customer"
    )


async def metric(p: Pipeline, name: str, **labels: str) -> float:
    await p.app.metrics.flush()
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{inner}}}" if labels else name
    raw = await p.redis.hget(p.keys.metrics, series)  # type: ignore[misc]
    return float(raw) if raw is not None else 0.0
