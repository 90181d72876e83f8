"""Past orders (full sync `--with-orders`, and one customer's after their full sync): walk
the Orders API newest first from `history_floor` (Shopify's 60-day window unless the store
granted `read_all_orders`), leave out orders not settled, and send each through `send_order`
with the webhooks' dedup, a page's products fetched at once and a few orders in parallel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from mappings.installation import Shop
from mappings.orders import is_settled_purchase, order_customer_id, order_product_ids
from mappings.snapshot import PayloadError
from worker.context import WorkerContext
from worker.errors import NotFoundError
from worker.orders.result import HistoryResult
from worker.orders.send import event_sections, send_order
from worker.products import products_of

log = structlog.get_logger("worker.orders")

HISTORY_WINDOW = timedelta(days=60)  # Shopify hides older orders without read_all_orders
HISTORY_CONCURRENCY = 8
SCOPES_TTL_S = 600.0


async def history_floor(app: WorkerContext, shop: Shop, since: datetime | None = None) -> datetime | None:
    """The oldest creation time history may reach: `since`, bounded by Shopify's 60-day window
    unless the store granted `read_all_orders`."""
    if await _has_all_orders(app, shop):
        return since
    window = datetime.now(UTC) - HISTORY_WINDOW
    return window if since is None or since < window else since


async def _has_all_orders(app: WorkerContext, shop: Shop) -> bool:
    key = f"order-scopes:{shop.domain}"
    cached = app.clients.get(key)
    if isinstance(cached, _Scopes) and cached.expires > time.monotonic():
        return cached.all_orders
    try:
        scopes = await app.shopify(shop).access_scopes()
    except NotFoundError:
        scopes = []
    all_orders = "read_all_orders" in scopes
    app.clients[key] = _Scopes(all_orders, time.monotonic() + SCOPES_TTL_S)
    return all_orders


@dataclass
class _Scopes:
    all_orders: bool
    expires: float

    async def close(self) -> None:
        return None


async def sync_past_orders(
    app: WorkerContext,
    shop: Shop,
    *,
    since: datetime | None = None,
    customer_ids: Collection[int] | None = None,
    on_page: Callable[[HistoryResult], Awaitable[None]] | None = None,
) -> HistoryResult:
    """Send the store's past orders (every customer's, or only `customer_ids`'), once each.

    Walks `orders.json?status=any` newest first from `history_floor(since)`; each order goes
    through `send_order` with the same dedup as webhooks. Cancelled and unpaid or fully
    refunded orders are left out (`is_settled_purchase`). Meant to run after the customers'
    full sync (customers without state are synced first, one by one). An order that fails is
    logged and counted in `failed`; run again to retry it (sent orders are skipped).
    `on_page` is awaited after each page with the running counts (progress)."""
    result = HistoryResult(created_at_min=await history_floor(app, shop, since))
    wanted = None if customer_ids is None else {int(c) for c in customer_ids}
    pages = app.shopify(shop).iter_order_pages(status="any", created_at_min=result.created_at_min)
    async for page in pages:
        await _history_page(app, shop, page, wanted, result)
        if on_page is not None:
            await on_page(result)
    return result


async def sync_customer_orders(
    app: WorkerContext, shop: Shop, customer_id: int, *, since: datetime | None = None
) -> int:
    """Send one customer's past orders (as `sync_past_orders`); returns how many were sent.

    Costs no Shopify request for a customer with no events to receive (in no section that maps
    an event version) or, when the installation keeps `orders_count`, without orders. Any
    order that fails is retried by calling again; the first error is raised after the others
    were tried (a transient one: the caller retries later)."""
    stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is not None:
        return 0
    if stored.state is not None and (
        not event_sections(shop, stored.state.sections) or stored.state.fields.get("orders_count") in (0, "0")
    ):
        return 0
    result = HistoryResult(created_at_min=await history_floor(app, shop, since))
    errors: list[Exception] = []
    pages = app.shopify(shop).iter_order_pages(
        status="any", created_at_min=result.created_at_min, customer_id=customer_id
    )
    async for page in pages:
        await _history_page(app, shop, page, {customer_id}, result, errors)
    if errors:
        raise errors[0]
    return result.sent


async def _history_page(
    app: WorkerContext,
    shop: Shop,
    page: Sequence[Mapping[str, Any]],
    wanted: set[int] | None,
    result: HistoryResult,
    errors: list[Exception] | None = None,
) -> None:
    semaphore = asyncio.Semaphore(HISTORY_CONCURRENCY)
    # The page's products in one or two requests rather than one per order.
    product_ids = {pid for order in page for pid in _product_ids_or_none(order)}
    await products_of(app, shop).get_many(sorted(product_ids))

    async def one(order: Mapping[str, Any]) -> None:
        try:
            if wanted is not None and order_customer_id(order) not in wanted:
                return
            result.seen += 1
            if not is_settled_purchase(order, shop.orders.event_topic):
                result.outcomes["unsettled"] += 1
                app.metrics.inc("shopsync_orders_total", {"source": "history", "outcome": "unsettled"})
                return
            async with semaphore:
                sent = await send_order(app, shop, order, source="history")
            result.outcomes[sent.outcome] += 1
        except Exception as exc:  # one bad order must not stop a backfill of thousands
            if errors is not None:
                errors.append(exc)
            result.failed += 1
            app.metrics.inc("shopsync_orders_total", {"source": "history", "outcome": "failed"})
            log.warning(
                "history_order_failed", order_id=order.get("id"), error=f"{type(exc).__name__}: {exc}"
            )

    await asyncio.gather(*(one(order) for order in page))


def _product_ids_or_none(order: Mapping[str, Any]) -> list[int]:
    try:
        return order_product_ids(order)
    except PayloadError:
        return []  # `send_order` reports the order itself
