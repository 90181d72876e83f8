"""What APSIS must hold, computed from the sandbox store, and every difference from what it holds.

Shared by the end-to-end harness (`tests/e2e/harness.py`) and the reliability scenarios.

Consent 2.0: consent is the profile's, per section, channel and topic. For every section with a
consent mapping, the mapped topics the profile is opted in to on each mapped channel must be the
ones Shopify's consent state implies (others are not the sync's: consent given in APSIS itself). An email or phone change needs no check of its own: the consents
stay on the profile, and the profile's address attribute is compared with the other attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mappings.installation import Section, Shop
from mappings.normalize import normalize_customer
from mappings.plan import AddressAttributes, plan_sync
from mappings.state import SyncState
from mappings.writes import OPT_IN
from sandbox.apsis.account import Account
from sandbox.shopify.serialize import serialize_customer
from sandbox.shopify.store import Store
from worker.apsis_definitions import address_versions, current_versions

# The customer is read as the newest REST version shows it: whatever the installation's
# version, the consent topics deliver SMS and email consent in that form.
ORACLE_VERSION = "2025-01"


def address_attributes(shop: Shop, account: Account) -> AddressAttributes:
    """Per section with a consent mapping, the live versions of the address attributes its
    channels send to, as the worker reads them from APSIS's definitions (it writes them too)."""
    out: dict[str, Mapping[str, str]] = {}
    for section in shop.sections:
        index = account.sections.get(section.discriminator)
        if section.consents and index is not None:
            definitions = [a.to_json() for a in index.section.attributes]
            out[section.discriminator] = address_versions(current_versions(definitions))
    return out


def expected_state(
    shop: Shop, store: Store, customer_id: int, *, addresses: AddressAttributes | None = None
) -> SyncState | None:
    """The sync state that a fresh sync of the customer as the store has it now produces
    (`addresses`: see `address_attributes`; without them, only the mapped attributes)."""
    customer = store.customer(customer_id)
    if customer is None:
        return None
    payload = serialize_customer(customer, ORACLE_VERSION)
    return plan_sync(shop, None, normalize_customer(payload), address_attributes=addresses).state


def customer_problems(
    shop: Shop,
    store: Store,
    account: Account,
    customer_id: int,
    addresses: AddressAttributes | None = None,
) -> list[str]:
    """Every difference between the customer's APSIS profile and consents and the store."""
    problems: list[str] = []
    cid = customer_id
    if addresses is None:
        addresses = address_attributes(shop, account)
    state = expected_state(shop, store, cid, addresses=addresses)
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
        problems += _consent_problems(shop, account, state, section)
    return problems


def _consent_problems(shop: Shop, account: Account, state: SyncState, section: Section) -> list[str]:
    """The profile's opted-in mapped topics per channel against those Shopify's state implies."""
    problems: list[str] = []
    s = section.discriminator
    for mapping in section.consents:
        channel = mapping.channel_discriminator
        want = sorted(
            key.topic
            for key, kind in state.consents.items()
            if kind == OPT_IN and key.section == s and key.channel == channel
        )
        # Topics the installation does not map are not the sync's (consent given in APSIS itself).
        opted_in = account.opted_in_topics(shop.apsis.keyspace, str(state.customer_id), s, channel)
        got = sorted(t for t in opted_in if t in mapping.topics)
        if got != want:
            problems.append(
                f"{state.customer_id}: section {s} {mapping.channel} opted-in topics {got} != {want}"
            )
    return problems


def mismatches(shop: Shop, store: Store, account: Account, customer_ids: Iterable[int]) -> list[str]:
    """Every difference between APSIS and what the store says it must hold."""
    problems: list[str] = []
    addresses = address_attributes(shop, account)
    for cid in customer_ids:
        problems += customer_problems(shop, store, account, cid, addresses)
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
    addresses = address_attributes(shop, account)
    for order_id in order_ids:
        order = store.order(order_id)
        if order is None or order.customer_id is None:
            continue
        paid = order.financial_status == "paid"
        state = expected_state(shop, store, order.customer_id, addresses=addresses)
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
                result.problems.append(
                    f"order {order_id}: no order event in {section.discriminator}"
                    f" (deliveries: {order_deliveries(store, order_id)})"
                )
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


def order_deliveries(store: Store, order_id: int) -> str:
    """What the sandbox delivered of an order's webhooks (topic, event id, every status): the
    first thing to read when an order event is missing."""
    needle = f'"id":{order_id},'.encode()
    found = [
        f"{r.topic} {r.event_id} {r.statuses}"
        for r in store.deliverer.records.values()
        if r.topic.startswith("orders/") and needle in r.body.replace(b" ", b"")
    ]
    return "; ".join(found) or "none recorded"
