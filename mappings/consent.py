"""Consent decisions for one address on one section's consent list (Email or SMS).

- `subscribed` -> opt-in to every mapped topic.
- `unsubscribed`, `redacted`, `invalid` -> opt-out of every mapped topic.
- `not_subscribed`, `pending` -> no write, unless the previous Shopify state was `subscribed`
  (then opt-out). The transition is judged on Shopify's states, not on what we wrote, so topics
  carried over by an email change are not undone by a later `not_subscribed` customer update.
- Unknown or null consent -> no write.
- A write is planned only when it differs from what was last written for that address and topic
  (`force` rewrites every decided topic).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mappings.installation import ConsentMapping
from mappings.writes import OPT_IN, OPT_OUT, ConsentType, ConsentWrite

OPT_OUT_STATES: Final = frozenset({"unsubscribed", "redacted", "invalid"})
QUIET_STATES: Final = frozenset({"not_subscribed", "pending"})


def decide(state: Any, previous: Any) -> ConsentType | None:
    """The consent every mapped topic should have, or None for no write.

    `state` and `previous` are Shopify consent states (str), None or UNKNOWN.
    """
    if state == "subscribed":
        return OPT_IN
    if state in OPT_OUT_STATES:
        return OPT_OUT
    if state in QUIET_STATES and previous == "subscribed":
        return OPT_OUT
    return None


def consent_writes(
    mapping: ConsentMapping,
    section: str,
    address: str,
    desired: Mapping[str, ConsentType],
    written: Mapping[str, ConsentType],
    *,
    force: bool = False,
) -> list[ConsentWrite]:
    """Writes for the topics whose desired type differs from the one last written."""
    return [
        ConsentWrite(mapping.channel_discriminator, address, section, mapping.consent_list, topic, kind)
        for topic, kind in desired.items()
        if force or written.get(topic) != kind
    ]


def mapped_decisions(mapping: ConsentMapping, state: Any, previous: Any) -> dict[str, ConsentType]:
    """`{topic: type}` for the mapped topics (empty when the decision is no write)."""
    kind = decide(state, previous)
    return {topic: kind for topic in mapping.topics} if kind else {}
