"""A new email address (or phone number, on the SMS channel) for a profile.

For every section the customer is in with a consent mapping on that channel:
- The new address is opted in to every topic the old address had on that consent list: the
  topics read from APSIS consent evaluations (so consent given outside Shopify carries over),
  or, when the worker gives none, the topics we last opted it in to.
- Shopify's consent state still decides the mapped topics of the new address and wins over the
  carry-over: `subscribed` opts them in; `unsubscribed`/`redacted`/`invalid` opt them out and
  nothing is carried (not even unmapped topics); a change from `subscribed` to
  `not_subscribed`/`pending` opts the mapped topics out, unmapped carried topics still move.
- The old address is then opted out of the mapped topics and every topic it had on the list.
  New-address opt-ins come first, so a failure half-way never leaves the person without consent.
- An address removed in Shopify (now null) is an address change with no new address: the old
  one is opted out. A first address (nothing synced before) is not a change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mappings.consent import OPT_OUT_STATES, consent_writes, decide
from mappings.installation import ConsentMapping
from mappings.snapshot import UNKNOWN
from mappings.writes import OPT_IN, OPT_OUT, ConsentType, ConsentWrite


@dataclass(frozen=True, slots=True)
class AddressChange:
    new_address: list[ConsentWrite]
    old_address: list[ConsentWrite]
    desired: dict[str, ConsentType]  # what the new address should hold afterwards, per topic


def address_changed(old: str | None, new: Any) -> bool:
    """True when a synced address became a different one (or was removed)."""
    return old is not None and new is not UNKNOWN and new != old


def plan_address_change(
    mapping: ConsentMapping,
    section: str,
    old: str,
    new: str | None,
    state: Any,
    previous: Any,
    old_topics: Collection[str],
    written_new: Mapping[str, ConsentType] | None = None,
    *,
    force: bool = False,
) -> AddressChange:
    """Writes for one section's consent list when `old` becomes `new`.

    `state`/`previous`: Shopify's consent state now and before; `old_topics`: the topics the old
    address had opted in on `mapping.consent_list`; `written_new`: what we already wrote for
    the new address (usually nothing).
    """
    carried = [] if state in OPT_OUT_STATES else sorted(set(old_topics) - set(mapping.topics))
    desired: dict[str, ConsentType] = {}
    decision = decide(state, previous)
    for topic in mapping.topics:
        if decision is not None:
            desired[topic] = decision
        elif topic in old_topics and state not in OPT_OUT_STATES:
            desired[topic] = OPT_IN
    for topic in carried:
        desired[topic] = OPT_IN
    new_writes = consent_writes(mapping, section, new, desired, written_new or {}, force=force) if new else []
    gone = [*mapping.topics, *sorted(set(old_topics) - set(mapping.topics))]
    old_writes = consent_writes(mapping, section, old, dict.fromkeys(gone, OPT_OUT), {}, force=True)
    return AddressChange(new_writes, old_writes, desired if new else {})
