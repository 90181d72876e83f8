"""Consent decisions for one section's topics on one channel (Email or SMS), Consent 2.0.

Consent is the profile's, per channel and topic; the address it reaches is the profile's email or
mobile attribute. So an email or phone change is an attribute update and no consent write: the
new address inherits every topic the profile had (given in Shopify or in APSIS), and the old
address receives nothing more because it is no longer the profile's.

- `subscribed` -> opt-in to every mapped topic.
- `unsubscribed`, `redacted`, `invalid` -> opt-out of every mapped topic.
- `not_subscribed`, `pending` -> no write, unless the previous Shopify state was `subscribed`
  (then opt-out): a customer who never subscribed in Shopify does not undo consent given in APSIS.
- Unknown or null consent -> no write.
- A write is planned only when it differs from what was last written for that profile, section
  and topic. Consent writes are never forced: re-sending an opt-in would override an opt-out given
  in APSIS since (an unsubscribe link), which only a newer change in Shopify may do.
- `guard_opt_ins`: before an opt-in is sent, the profile's consents read from APSIS decide whether
  it still may be: an opt-out there newer than Shopify's consent stays. An opt-out this service
  wrote does not hold back Shopify's newer subscribe: one written per profile carries our `source`;
  one written by a profile import carries whatever source APSIS gives imports (the import request
  has no source field), so the import leaves a mark per opt-out in the customer's stored marks
  (`imported_mark`, the time the import was seen completed) and an opt-out no newer than that
  mark is ours (`written_by_us`). An opt-out given in APSIS after the import is newer: it stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

from mappings.installation import ConsentMapping
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey, ConsentType, ConsentWrite, Write

OPT_OUT_STATES: Final = frozenset({"unsubscribed", "redacted", "invalid"})
QUIET_STATES: Final = frozenset({"not_subscribed", "pending"})
# APSIS consent types that let a profile receive a topic.
APSIS_OPTED_IN: Final = frozenset({"opt-in", "confirmed-opt-in"})
IMPORTED_PREFIX: Final = "imported_out:"
# APSIS's clock against ours: an import's opt-out stamped up to this much after we saw the import
# complete is still the import's.
IMPORT_CLOCK_SLACK_S: Final = 2.0


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


def mapped_decisions(mapping: ConsentMapping, state: Any, previous: Any) -> dict[str, ConsentType]:
    """`{topic: type}` for the mapped topics (empty when the decision is no write)."""
    kind = decide(state, previous)
    return {topic: kind for topic in mapping.topics} if kind else {}


def consent_writes(
    mapping: ConsentMapping,
    section: str,
    profile_key: str,
    desired: Mapping[str, ConsentType],
    written: Mapping[ConsentKey, ConsentType],
) -> list[ConsentWrite]:
    """Writes for the topics whose desired type differs from the one last written."""
    channel = mapping.channel_discriminator
    return [
        ConsentWrite(section, channel, topic, kind, profile_key)
        for topic, kind in desired.items()
        if written.get(ConsentKey(section, channel, topic)) != kind
    ]


class ApsisConsent(NamedTuple):
    """One consent as APSIS reports it (`GET .../consents`): its type, when it last changed, and
    whether this service wrote it (its `source`): our own opt-out, sent late for an older Shopify
    state, must not hold back Shopify's newer subscribe."""

    type: str
    modified_at: datetime | None
    ours: bool = False


def imported_mark(key: ConsentKey) -> str:
    """The name of the stored mark saying a profile import wrote an opt-out for `key`."""
    return f"{IMPORTED_PREFIX}{key.section}|{key.channel}|{key.topic}"


def written_by_us(
    key: ConsentKey,
    kind: str,
    modified_at: datetime | None,
    source_ours: bool,
    marks: Mapping[str, float],
) -> bool:
    """Whether APSIS's consent for `key` is one this service wrote: our `source`, or an opt-out a
    profile import of ours wrote (its mark, and APSIS's time no newer than the mark)."""
    if source_ours:
        return True
    if kind != OPT_OUT or modified_at is None:
        return False
    imported_at = marks.get(imported_mark(key))
    return imported_at is not None and modified_at.timestamp() <= imported_at + IMPORT_CLOCK_SLACK_S


class Guarded(NamedTuple):
    writes: tuple[Write, ...]
    # What APSIS holds for the opt-ins left out: the state records it, so they are not planned again.
    kept_in_apsis: dict[ConsentKey, ConsentType]


def guard_opt_ins(
    writes: tuple[Write, ...],
    apsis: Mapping[ConsentKey, ApsisConsent],
    shopify_times: Mapping[str, datetime | None],
) -> Guarded:
    """Leave out the opt-ins APSIS already has, and those an opt-out given in APSIS (not written
    by us) newer than Shopify's consent (`shopify_times` per channel; None when unknown) wins over.

    An APSIS opt-out without a time, or a Shopify consent without one, keeps the opt-out: losing
    an opt-out is worse than missing an opt-in. Opt-outs always pass.
    """
    kept: list[Write] = []
    held: dict[ConsentKey, ConsentType] = {}
    for write in writes:
        if not isinstance(write, ConsentWrite) or write.type != OPT_IN:
            kept.append(write)
            continue
        key = ConsentKey(write.section, write.channel, write.topic)
        current = apsis.get(key)
        if current is None:
            kept.append(write)
        elif current.type in APSIS_OPTED_IN:
            held[key] = OPT_IN
        elif current.type == OPT_OUT:
            shopify_at = shopify_times.get(write.channel)
            if current.ours or (
                shopify_at is not None
                and current.modified_at is not None
                and shopify_at > current.modified_at
            ):
                kept.append(write)
            else:
                held[key] = OPT_OUT
        else:  # pending-opt-in and types to come: Shopify's newer decision is sent
            kept.append(write)
    return Guarded(tuple(kept), held)
