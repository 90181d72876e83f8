"""One order, end to end (`send_order`): skip it when cancelled, find who receives its
events, stop early when the ledger says every section is done, plan the POSTs from the order
and its products (`mappings.orders.plan_order`), then, holding the order's lock, set a guest's
attributes and send the POSTs once. Counts every outcome."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from mappings.installation import Shop
from mappings.orders import is_cancelled, order_id_of, order_product_ids, plan_order
from worker.context import WorkerContext
from worker.orders.ledger import PURCHASE, all_done, lock_order, unlock_order
from worker.orders.posts import send_posts
from worker.orders.result import OrderResult
from worker.orders.target import find_target, patch_guest
from worker.products import products_of
from worker.runtime import TransientError


async def send_order(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    *,
    received_at: float | None = None,
    source: str = "webhook",
) -> OrderResult:
    """Send the order's events once (see the package docstring). Raises for "try again later"."""
    result = await _send_order(app, shop, order, received_at=received_at or time.time(), source=source)
    app.metrics.inc("shopsync_orders_total", {"source": source, "outcome": result.outcome})
    if result.items:
        app.metrics.inc("shopsync_order_events_total", {"source": source}, result.items)
    return result


async def _send_order(
    app: WorkerContext, shop: Shop, order: Mapping[str, Any], *, received_at: float, source: str
) -> OrderResult:
    order_id = order_id_of(order)
    if is_cancelled(order):
        return OrderResult("cancelled", order_id)
    target = await find_target(app, shop, order, order_id, received_at=received_at)
    if isinstance(target, str):
        return OrderResult(target, order_id)
    key = app.keys.order_sent(shop.domain, order_id, PURCHASE)
    if await all_done(app, key, event_sections(shop, target.sections)):
        return OrderResult("duplicate", order_id, target.profile_key)
    products = await products_of(app, shop).get_many(order_product_ids(order))
    posts = plan_order(shop, target.sections, target.profile_key, order, products, shop_url(shop))
    if not posts:
        return OrderResult("no_events", order_id, target.profile_key)
    token = await lock_order(app, key)
    if token is None:
        if source == "history":
            return OrderResult("busy", order_id, target.profile_key)
        raise TransientError(f"order {order_id} is being sent by another worker")
    try:
        if target.attributes:  # idempotent, so before the events: a retry redoes it harmlessly
            await patch_guest(app, shop, target, {p.section for p in posts})
        result = await send_posts(app, shop, order_id, key, posts)
    finally:
        await unlock_order(app, key, token)
    result.profile_key = target.profile_key
    return result


def event_sections(shop: Shop, sections: Collection[str]) -> list[str]:
    """The sections among `sections` that map an event version (the others get no marks)."""
    return [
        s.discriminator
        for s in shop.sections
        if s.discriminator in sections and (s.events.order or s.events.order_line)
    ]


def shop_url(shop: Shop) -> str:
    """The store's address (Shopify redirects the myshopify domain to its primary domain)."""
    return f"https://{shop.domain}"
