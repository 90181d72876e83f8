"""The order jobs behind the webhooks: `record_order` (`orders/create`, `orders/paid`: the
order's events, when the delivery is the installation's event topic) and `refresh_product`
(`products/update`: cache what order lines need of the product)."""

from __future__ import annotations

import time
from typing import Any

from core.jobs import Delivery
from mappings.installation import Shop
from mappings.orders import order_id_of
from mappings.snapshot import PayloadError
from worker.context import WorkerContext
from worker.orders.result import OrderResult
from worker.orders.send import send_order
from worker.products import products_of


async def record_order(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    """`orders/create`, `orders/paid`: the order's events, when this is the installation's topic."""
    order = delivery.payload()
    if not isinstance(order, dict):
        raise PayloadError("(body)", "an order payload must be a JSON object")
    if delivery.topic != shop.orders.event_topic:
        order_id = order_id_of(order)
        app.metrics.inc("shopsync_orders_total", {"source": "webhook", "outcome": "other_topic"})
        return OrderResult("other_topic", order_id).to_dict()
    result = await send_order(app, shop, order, received_at=delivery.received_at, source="webhook")
    if result.outcome == "sent":
        app.metrics.observe("shopsync_order_to_events_seconds", time.time() - delivery.received_at)
    return result.to_dict()


async def refresh_product(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    """`products/update`: the body is the product; cache what order lines need of it."""
    product = delivery.payload()
    if not isinstance(product, dict):
        raise PayloadError("(body)", "a product payload must be a JSON object")
    stored = await products_of(app, shop).store_product(product)
    return {"product_id": product.get("id"), "stored": stored}
