"""The drift audit's comparison: what one customer's profile must be (the plan a fresh sync of
Shopify's current customer makes) against what APSIS holds -> a list of typed differences.

Pure: no I/O. The worker (`worker/audit.py`) reads Shopify and APSIS and calls `compare`.

Differences (never a value, an email or a phone: version ids, section, channel and topic only):
- `missing`: the customer belongs in a section and APSIS has no profile for it.
- `extra`: APSIS has a profile the customer should not have: `deleted` (the customer is gone
  from Shopify) or `fails_conditions` (the customer meets no section's conditions).
- `attribute`: per section and attribute version id, APSIS holds another value than the mapping
  gives (a value the plan clears must be absent or null).
- `consent`: per section, channel and topic of the mapping:
  - Shopify's decision is opt-in and APSIS does not have the profile opted in, unless APSIS holds
    an opt-out the sync itself keeps (`mappings.consent.guard_opt_ins`: an opt-out given in APSIS,
    not by us, newer than Shopify's consent or without a time): that is the contact's own choice.
  - Shopify's decision is opt-out and APSIS has the profile opted in.
  - No decision (never subscribed in Shopify): anything APSIS holds is not the sync's.
Under Consent 2.0 an old email address cannot stay opted in after an email change: consent is
the profile's and reaches only the profile's current email attribute, which is compared above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mappings.consent import APSIS_OPTED_IN, ApsisConsent, guard_opt_ins
from mappings.installation import CHANNELS, Shop
from mappings.state import SyncState
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey, ConsentWrite

Kind = Literal["missing", "extra", "attribute", "consent"]
KINDS: tuple[Kind, ...] = ("missing", "extra", "attribute", "consent")


@dataclass(frozen=True, slots=True, order=True)
class Difference:
    """One difference; `detail` names what differs (a version id, `channel topic`, a reason)."""

    customer_id: int
    kind: Kind
    section: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"customer_id": self.customer_id, "kind": self.kind}
        if self.section:
            out["section"] = self.section
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Held:
    """What APSIS holds for one profile: per section read, its attributes (by version id) and its
    consents (by (channel, topic)). `exists` False: APSIS answered that there is no profile."""

    exists: bool
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    consents: Mapping[str, Mapping[tuple[str, str], ApsisConsent]] = field(default_factory=dict)


def compare(shop: Shop, customer_id: int, expected: SyncState | None, held: Held) -> list[Difference]:
    """Every difference for one customer. `expected` is the state of a fresh plan of Shopify's
    current customer (None: deleted in Shopify)."""
    cid = customer_id
    if expected is None or not expected.sections:
        if not held.exists:
            return []
        return [Difference(cid, "extra", detail="deleted" if expected is None else "fails_conditions")]
    if not held.exists:
        return [Difference(cid, "missing")]
    out: list[Difference] = []
    for section in shop.sections:
        s = section.discriminator
        if s not in expected.sections:
            continue  # left the section: what APSIS holds there stays, by design (mappings/plan.py)
        want = expected.attributes.get(s, {})
        got = held.attributes.get(s, {})
        for version_id in sorted(want):
            if not same_value(got.get(version_id), want[version_id]):
                out.append(Difference(cid, "attribute", s, version_id))
        out += _consents(cid, section.discriminator, section.consents, expected, held)
    return out


def _consents(cid: int, s: str, mappings: Iterable[Any], expected: SyncState, held: Held) -> list[Difference]:
    out: list[Difference] = []
    got = held.consents.get(s, {})
    times = {
        CHANNELS["email"]: expected.times.get("email_consent"),
        CHANNELS["sms"]: expected.times.get("sms_consent"),
    }
    for mapping in mappings:
        channel = mapping.channel_discriminator
        for topic in mapping.topics:
            key = ConsentKey(s, channel, topic)
            decision = expected.consents.get(key)
            current = got.get((channel, topic))
            opted_in = current is not None and current.type in APSIS_OPTED_IN
            if decision == OPT_OUT and opted_in:
                out.append(Difference(cid, "consent", s, f"{channel} {topic}"))
            elif decision == OPT_IN and not opted_in:
                write = ConsentWrite(s, channel, topic, OPT_IN, str(cid))
                known = {key: current} if current is not None else {}
                if guard_opt_ins((write,), known, times).writes:  # the sync would send it
                    out.append(Difference(cid, "consent", s, f"{channel} {topic}"))
    return out


def same_value(got: Any, want: Any) -> bool:
    """APSIS's value equals the mapped one (null and absent are the same; APSIS may answer a
    number or a boolean as the JSON type of its attribute, so text forms are compared too)."""
    if got is None or want is None:
        return got is None and want is None
    if got == want and type(got) is type(want):
        return True
    return _text(got) == _text(want)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Report:
    """Counts per kind and the first `limit` examples per kind, by customer id."""

    limit: int = 10
    customers: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, differences: Iterable[Difference]) -> None:
        for diff in differences:
            self.counts[diff.kind] += 1
            if len(self.examples[diff.kind]) < self.limit:
                self.examples[diff.kind].append(diff.to_json())

    @property
    def drift(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"customers": self.customers, **self.counts, "examples": self.examples}


def forget_written(state: SyncState, differences: Iterable[Difference]) -> SyncState:
    """The state without the records of what APSIS turned out not to hold, so the next ordinary
    sync of the customer plans those writes again (a missing profile: every attribute and consent).
    Everything else (times, fields, sections) stays: ordering is unchanged."""
    attributes = {s: dict(values) for s, values in state.attributes.items()}
    consents = dict(state.consents)
    for diff in differences:
        if diff.kind == "missing":
            attributes, consents = {}, {}
        elif diff.kind == "attribute":
            attributes.get(diff.section, {}).pop(diff.detail, None)
        elif diff.kind == "consent":
            channel, _, topic = diff.detail.partition(" ")
            consents.pop(ConsentKey(diff.section, channel, topic), None)
    return replace(state, attributes=attributes, consents=consents)
