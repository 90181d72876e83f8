"""Who receives an order's events: the customer's profile in every section the customer is
synced to (syncing a customer never synced yet first), a `guest:<email>` profile for guests when
the installation asks for it (`patch_guest` sets its email attribute), or the outcome why
nobody does (guest_skipped, guest_no_email, not_synced, customer_deleted)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from core.logging import mask_email
from mappings.installation import Shop
from mappings.orders import (
    guest_attributes,
    guest_email,
    guest_profile_key,
    guest_sections,
    order_customer_id,
)
from mappings.snapshot import JSON
from worker.context import WorkerContext
from worker.errors import ApiError, is_transient
from worker.shopify_errors import ProtectedDataError
from worker.sync import submit
from worker.sync_update import Update

log = structlog.get_logger("worker.orders")


@dataclass(frozen=True, slots=True)
class Target:
    """The profile an order's events go to, its sections, and (guests) attributes to set first."""

    profile_key: str
    sections: tuple[str, ...]
    attributes: Mapping[str, Mapping[str, JSON]] = field(default_factory=dict)


async def find_target(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    order_id: int,
    *,
    received_at: float,
) -> Target | str:
    """The profile and sections the order's events go to, or the outcome why there are none."""
    customer_id = order_customer_id(order)
    if customer_id is None:
        if shop.orders.guests != "email":
            return "guest_skipped"
        email = guest_email(order)
        if email is None:
            return "guest_no_email"
        sections = tuple(guest_sections(shop))
        if not sections:
            return "not_synced"
        log.info("guest_order", order_id=order_id, email=mask_email(email))
        return Target(guest_profile_key(email), sections, guest_attributes(shop, email))
    stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is None and stored.state is None:
        await _sync_customer_first(app, shop, order, order_id, customer_id, received_at)
        stored = await app.customers.load(shop.domain, customer_id)
    if stored.deleted_at is not None:
        return "customer_deleted"
    if stored.state is None or not stored.state.sections:
        return "not_synced"
    return Target(str(customer_id), tuple(stored.state.sections))


async def _sync_customer_first(
    app: WorkerContext,
    shop: Shop,
    order: Mapping[str, Any],
    order_id: int,
    customer_id: int,
    received_at: float,
) -> None:
    payload: dict[str, Any] | None
    try:
        payload = await app.shopify(shop).get_customer(customer_id)
    except ApiError as exc:
        if is_transient(exc) or isinstance(exc, ProtectedDataError):
            raise  # refused protected data: never synced as a customer without those fields
        log.warning("order_customer_fetch_failed", customer_id=customer_id, error=str(exc))
        embedded = order.get("customer")
        payload = dict(embedded) if isinstance(embedded, Mapping) else None
    if payload is None:
        return  # Shopify no longer has the customer: nothing to sync, no profile to send to
    update = Update(kind="rest", payload=payload, received_at=received_at, source="order")
    outcome = await submit(app, shop, f"order:{order_id}:{customer_id}", update)
    app.metrics.inc("shopsync_customers_total", {"source": "order", "outcome": outcome})


async def patch_guest(app: WorkerContext, shop: Shop, target: Target, sections: Collection[str]) -> None:
    """Set a guest profile's attributes (its email) in those of `sections` it has any for."""
    apsis = app.apsis(shop)
    for section, body in target.attributes.items():
        if section in sections:
            await apsis.patch_attributes(shop.apsis.keyspace, target.profile_key, section, body)
