"""What APSIS must hold, computed from the sandbox store, and every difference from what it holds.

Shared by the end-to-end harness (`tests/e2e/harness.py`) and the reliability scenarios.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mappings.installation import CHANNELS, Shop
from mappings.normalize import normalize_customer
from mappings.plan import plan_sync
from mappings.state import SyncState
from mappings.writes import OPT_IN
from sandbox.apsis.account import Account
from sandbox.shopify.serialize import serialize_customer
from sandbox.shopify.store import Store

# The customer is read as the newest REST version shows it: whatever the installation's
# version, the consent topics deliver SMS and email consent in that form.
ORACLE_VERSION = "2025-01"


def expected_state(shop: Shop, store: Store, customer_id: int) -> SyncState | None:
    """The sync state that a fresh sync of the customer as the store has it now produces."""
    customer = store.customer(customer_id)
    if customer is None:
        return None
    payload = serialize_customer(customer, ORACLE_VERSION)
    return plan_sync(shop, None, normalize_customer(payload)).state


def customer_problems(shop: Shop, store: Store, account: Account, customer_id: int) -> list[str]:
    """Every difference between the customer's APSIS profile and consents and the store."""
    problems: list[str] = []
    cid = customer_id
    state = expected_state(shop, store, cid)
    profile = account.profile(shop.apsis.keyspace, str(cid))
    if state is None:
        if profile is not None and any(profile.attributes.values()):
            problems.append(f"{cid}: deleted in the store but has a profile")
        return problems
    for section in shop.sections:
        got = dict(profile.attributes.get(section.discriminator, {})) if profile else {}
        if section.discriminator not in state.sections:
            # By design (mappings/plan.py) a customer who stops meeting a section's conditions
            # is no longer synced there and what APSIS holds in it stays: nothing to compare.
            continue
        want = {k: v for k, v in state.attributes.get(section.discriminator, {}).items() if v is not None}
        if got != want:
            problems.append(f"{cid}: section {section.discriminator} attributes {got} != {want}")
        for mapping in section.consents:
            address = state.email if mapping.channel == "email" else state.phone
            if not address:
                continue
            want_topics = sorted(
                k.topic
                for k, kind in state.consents.items()
                if kind == OPT_IN
                and k.address == address
                and k.section == section.discriminator
                and k.consent_list == mapping.consent_list
            )
            got_topics = sorted(
                account.opted_in_topics(
                    CHANNELS[mapping.channel], address, section.discriminator, mapping.consent_list
                )
            )
            if got_topics != want_topics:
                problems.append(
                    f"{cid}: {mapping.channel} topics on {mapping.consent_list} {got_topics} != {want_topics}"
                )
    return problems


def mismatches(shop: Shop, store: Store, account: Account, customer_ids: Iterable[int]) -> list[str]:
    """Every difference between APSIS and what the store says it must hold."""
    problems: list[str] = []
    for cid in customer_ids:
        problems += customer_problems(shop, store, account, cid)
    return problems


@dataclass
class OrderCheck:
    """Purchase events counted per order: each checked order must have exactly one set."""

    checked: int = 0
    lost: int = 0
    lost_orders: list[tuple[int, str]] = field(default_factory=list)  # (order id, section)
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)


def order_events(shop: Shop, store: Store, account: Account, order_ids: Iterable[int]) -> OrderCheck:
    """For every order of a customer still in the store and synced to a section that maps
    purchase events: one order event and one event per line, no more; and once paid, no fewer
    in the sections without conditions (every customer is in them, whenever the order came)."""
    result = OrderCheck()
    for order_id in order_ids:
        order = store.order(order_id)
        if order is None or order.customer_id is None:
            continue
        paid = order.financial_status == "paid"
        state = expected_state(shop, store, order.customer_id)
        if state is None:
            continue
        profile = account.profile(shop.apsis.keyspace, str(order.customer_id))
        for section in shop.sections:
            if section.discriminator not in state.sections or not section.events.order:
                continue
            result.checked += 1
            events = profile.events.get(section.discriminator, []) if profile else []
            mine = [e for e in events if str(e.get("data", {}).get("order_id")) == str(order_id)]
            heads = sum(1 for e in mine if e.get("version_id") == section.events.order)
            lines = len(mine) - heads
            want_lines = len(order.line_items) if section.events.order_line else 0
            if heads == 0 and (not paid or section.conditions):
                # Unpaid: may or may not be sent. A section with conditions: the events go to
                # the sections the customer was in when the order was sent, which the store's
                # state now need not show. Either way: at most once.
                continue
            if heads == 0:
                result.lost += 1
                result.lost_orders.append((order_id, section.discriminator))
                result.problems.append(f"order {order_id}: no order event in {section.discriminator}")
            elif heads > 1 or lines > want_lines:
                result.duplicated += 1
                result.problems.append(
                    f"order {order_id}: {heads} order events, {lines} line events (want 1, {want_lines})"
                )
            elif lines < want_lines:
                result.lost += 1
                result.lost_orders.append((order_id, section.discriminator))
                result.problems.append(f"order {order_id}: {lines} line events, want {want_lines}")
    return result
