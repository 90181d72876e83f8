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
Under Consent 2.0 consent is the profile's and reaches the profile's current email (mobile)
attribute: an old address still opted in after an email change is that attribute differing while
the profile is opted in on its channel. It is an `attribute` difference noted `old_address` (and
counted apart in the report); the repair's attribute write moves the consent to the new address.

Bulk reads (`worker/audit_apsis_bulk.py`): APSIS's consent report lists, per profile with data in
a section, the address when the profile consented to any of the report's topics on a channel
(blank otherwise) and attribute columns. `report_parts` asks one report per topic (so consent is
known per topic) with the attributes on the section's first; `held_from_report` turns a profile's
rows into the same `Held` the per-profile reads give. A report shows opt-ins only: where Shopify's
decision is an opt-in the report does not show, `unsettled_sections` names the sections whose
consents a per-profile read must settle (an opt-out given in APSIS may rightly stand).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mappings.consent import APSIS_OPTED_IN, ApsisConsent, guard_opt_ins
from mappings.installation import CHANNELS, Shop
from mappings.plan import AddressAttributes
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
    note: str = ""  # "old_address": the channel's address attribute differs, the profile opted in

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"customer_id": self.customer_id, "kind": self.kind}
        if self.section:
            out["section"] = self.section
        if self.detail:
            out["detail"] = self.detail
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class Held:
    """What APSIS holds for one profile: per section read, its attributes (by version id) and its
    consents (by (channel, topic)). `exists` False: APSIS answered that there is no profile."""

    exists: bool
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    consents: Mapping[str, Mapping[tuple[str, str], ApsisConsent]] = field(default_factory=dict)


def compare(
    shop: Shop,
    customer_id: int,
    expected: SyncState | None,
    held: Held,
    addresses: AddressAttributes | None = None,
) -> list[Difference]:
    """Every difference for one customer. `expected` is the state of a fresh plan of Shopify's
    current customer (None: deleted in Shopify); `addresses` the channels' address attributes."""
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
        channels = {v: c for c, v in (addresses or {}).get(s, {}).items()}
        for version_id in sorted(want):
            if not same_value(got.get(version_id), want[version_id]):
                channel = CHANNELS.get(channels.get(version_id, ""), "")
                opted = channel and _opted_in(held.consents.get(s, {}), channel)
                out.append(Difference(cid, "attribute", s, version_id, "old_address" if opted else ""))
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


def _opted_in(consents: Mapping[tuple[str, str], ApsisConsent], channel: str) -> bool:
    return any(c == channel and consent.type in APSIS_OPTED_IN for (c, _), consent in consents.items())


def same_value(got: Any, want: Any) -> bool:
    """APSIS's value equals the mapped one (null and absent are the same; APSIS may answer a
    number or a boolean as the JSON type of its attribute, and a report gives every value as
    text, so numbers are compared as numbers and the rest by text form)."""
    if got is None or want is None:
        return got is None and want is None
    if got == want and type(got) is type(want):
        return True
    for text, number in ((got, want), (want, got)):  # a report's cell holds a number as text
        if isinstance(text, str) and isinstance(number, int | float) and not isinstance(number, bool):
            try:
                return float(text) == float(number)
            except ValueError:
                return False
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
    old_address: int = 0  # attribute differences noted old_address

    def add(self, differences: Iterable[Difference]) -> None:
        for diff in differences:
            self.counts[diff.kind] += 1
            self.old_address += diff.note == "old_address"
            if len(self.examples[diff.kind]) < self.limit:
                self.examples[diff.kind].append(diff.to_json())

    @property
    def drift(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            **self.counts,
            "old_address": self.old_address,
            "examples": self.examples,
        }


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


# --- bulk reads through consent reports ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportPart:
    """One consent report of an audit: a section, one topic, the channels (`email`/`sms`, also
    the column names) whose mapping has the topic, and the attribute version ids as columns."""

    section: str
    topic: str
    channels: tuple[str, ...]
    attributes: tuple[str, ...] = ()


def report_parts(
    shop: Shop, addresses: AddressAttributes, fallback_topics: Mapping[str, str] | None = None
) -> list[ReportPart]:
    """The reports that answer for the sections. A report names at least one topic: a section
    without consent topics takes its `fallback_topics` entry (any topic of the section in APSIS;
    its consent is not read) for its attribute columns, and without one it is not covered (read
    per profile)."""
    parts: list[ReportPart] = []
    for section in shop.sections:
        s = section.discriminator
        topics: dict[str, list[str]] = {}
        for mapping in section.consents:
            for topic in mapping.topics:
                topics.setdefault(topic, []).append(mapping.channel)
        if not topics and (fallback_topics or {}).get(s):
            topics[(fallback_topics or {})[s]] = []
        versions = tuple(sorted({*section.attributes.values(), *addresses.get(s, {}).values()}))
        for n, (topic, channels) in enumerate(topics.items()):
            parts.append(ReportPart(s, topic, tuple(channels), versions if n == 0 else ()))
    return parts


def report_cells(part: ReportPart, row: Mapping[str, str]) -> dict[str, Any]:
    """What an audit keeps of one report row: the channels consented (not the address) and the
    attribute cells."""
    return {
        "c": [channel for channel in part.channels if (row.get(channel) or "").strip()],
        "a": {v: row.get(v) or "" for v in part.attributes},
    }


def held_from_report(parts: Iterable[ReportPart], rows: Iterable[Mapping[str, Any] | None]) -> Held:
    """A profile's `Held` from its cells in each report (None: not a row of that report). A blank
    attribute cell reads as absent (a report cannot tell an empty text from none)."""
    exists = False
    attributes: dict[str, dict[str, Any]] = {}
    consents: dict[str, dict[tuple[str, str], ApsisConsent]] = {}
    for part, row in zip(parts, rows, strict=True):
        if row is None:
            continue
        exists = True
        if part.attributes:
            attributes[part.section] = {v: cell for v, cell in row["a"].items() if cell != ""}
        got = consents.setdefault(part.section, {})
        for channel in row["c"]:
            got[(CHANNELS[channel], part.topic)] = ApsisConsent("opt-in", None)
    return Held(exists, attributes, consents)


def unsettled_sections(shop: Shop, expected: SyncState | None, held: Held) -> list[str]:
    """Sections where Shopify's decision is an opt-in the report does not show: only the
    profile's consents tell an opt-out given in APSIS (kept by the sync's guard) from none."""
    if expected is None or not held.exists:
        return []
    out: list[str] = []
    for section in shop.sections:
        s = section.discriminator
        if s not in expected.sections:
            continue
        got = held.consents.get(s, {})
        if any(
            expected.consents.get(ConsentKey(s, m.channel_discriminator, t)) == OPT_IN
            and (m.channel_discriminator, t) not in got
            for m in section.consents
            for t in m.topics
        ):
            out.append(s)
    return out
