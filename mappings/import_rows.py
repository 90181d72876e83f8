"""Profile imports (APSIS import v2): one customer -> the CSV rows of the import files it goes in.

The same pure decisions as the per-profile path (`mappings.plan.plan_sync`: conditions ->
sections, attribute mapping, consent decisions); only the shape of the writes differs.

Files, per section, two kinds (an import's consent mapping fixes the consent `type`):
- `in`: the profile key, every mapped attribute (the address attributes of the section's consent
  channels among them) and one column per opt-in topic (`true` to opt in, empty for no write).
- `out`: the profile key, the address attributes and one column per opt-out topic.
Every consent mapping has `resubscribe_if_opted_out = false`: an import never overrides an
opt-out given in APSIS. Every row carries every mapped attribute, `clear_existing_attributes`
is on, and an empty cell is a cleared (null) value, as a `null` in a PATCH.

Routing (`route_customer`), given the customer's stored state (None: never synced):
- `stale`: the stored state is newer than the snapshot (a webhook got there first): left out.
- `skipped`: in no section; `unchanged`: a synced customer whose plan writes nothing.
- `per_profile`: a synced customer whose consent decision changed since the last consent synced,
  or whose email or phone changed, or with a mapped field unknown (a row would clear it), or
  whose snapshot has its state's `updated_at` and other values (`Plan.tied`: the worker reads
  the customer): the per-profile path's consent guard and ordering apply.
- `refused`: a row APSIS would reject (malformed email or phone, a value too long): a dead letter.
- `import`: the rows, and the state the customer has once they are imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mappings.consent import mapped_decisions
from mappings.installation import Section, Shop
from mappings.plan import AddressAttributes, address_changes, plan_sync
from mappings.snapshot import JSON, UNKNOWN, CustomerSnapshot
from mappings.state import SyncState
from mappings.writes import OPT_IN, OPT_OUT, ConsentWrite

ImportKind = Literal["in", "out"]
KINDS: tuple[ImportKind, ...] = ("in", "out")
Route = Literal["import", "per_profile", "stale", "skipped", "unchanged", "refused"]

PROFILE_KEY_COLUMN = "profile_key"
CONSENT_YES = "true"
# APSIS documents no per-value length; the sandbox imports values up to 1,000 characters (docs/APSIS.md,
# worker/apsis_imports.MAX_VALUE_CHARS): a longer value is refused before upload, not skipped silently.
MAX_VALUE_CHARS = 1000
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_MOBILE_RE = re.compile(r"^\+[0-9]{8,15}$")  # E.164: a plus and 8 to 15 digits
_NEEDS_QUOTES = re.compile('[,"\r\n]')  # RFC 4180: a field holding one of these is quoted


def attribute_column(version_id: str) -> str:
    return f"attr:{version_id}"


def consent_column(channel: str, topic: str) -> str:
    return f"consent:{channel}:{topic}"


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns of one section's file of one kind, and the address attributes it carries."""

    section: str
    kind: ImportKind
    attributes: tuple[str, ...]  # attribute version ids, column order
    consents: tuple[tuple[str, str], ...]  # (channel discriminator, topic), column order
    addresses: Mapping[str, str]  # channel discriminator -> address attribute version id
    emails: frozenset[str]  # version ids holding an email address
    mobiles: frozenset[str]  # version ids holding an E.164 number

    @property
    def name(self) -> str:
        return f"{self.section}:{self.kind}"

    def header(self) -> list[str]:
        return [
            PROFILE_KEY_COLUMN,
            *(attribute_column(v) for v in self.attributes),
            *(consent_column(c, t) for c, t in self.consents),
        ]


def layouts(shop: Shop, address_attributes: AddressAttributes) -> dict[tuple[str, ImportKind], Layout]:
    """Every (section, kind) file layout of the installation (`out` only where consent is mapped)."""
    out: dict[tuple[str, ImportKind], Layout] = {}
    for section in shop.sections:
        versions = address_attributes.get(section.discriminator, {})
        addresses = {
            m.channel_discriminator: versions[m.channel] for m in section.consents if m.channel in versions
        }
        emails = frozenset(
            [v for p, v in section.attributes.items() if p == "email"]
            + ([versions["email"]] if "email" in versions else [])
        )
        mobiles = frozenset(
            [v for p, v in section.attributes.items() if p == "phone"]
            + ([versions["sms"]] if "sms" in versions else [])
        )
        topics = tuple((m.channel_discriminator, t) for m in section.consents for t in m.topics)
        mapped = tuple(dict.fromkeys([*section.attributes.values(), *addresses.values()]))
        out[(section.discriminator, "in")] = Layout(
            section.discriminator, "in", mapped, topics, addresses, emails, mobiles
        )
        if topics:
            out[(section.discriminator, "out")] = Layout(
                section.discriminator,
                "out",
                tuple(dict.fromkeys(addresses.values())),
                topics,
                addresses,
                emails,
                mobiles,
            )
    return out


def import_request(keyspace: str, layout: Layout) -> dict[str, Any]:
    """The body of `POST /v2/audience/sections/{section}/imports` for a file of `layout`."""
    consent_type = OPT_IN if layout.kind == "in" else OPT_OUT
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for channel, topic in layout.consents:
        by_channel.setdefault(channel, []).append(
            {
                "field_selector": consent_column(channel, topic),
                "channel_discriminator": channel,
                "topic_discriminator": topic,
                "type": consent_type,
                "resubscribe_if_opted_out": False,
            }
        )
    return {
        "keyspace_mapping": {"keyspace_discriminator": keyspace, "field_selector": PROFILE_KEY_COLUMN},
        "options": {"update_existing_profiles": True, "clear_existing_attributes": layout.kind == "in"},
        "attribute_mappings": [
            {"field_selector": attribute_column(v), "attribute_version_id": v} for v in layout.attributes
        ],
        "consent_mappings": [
            {"address_field_selector": attribute_column(layout.addresses[channel]), "consents": consents}
            for channel, consents in by_channel.items()
            if channel in layout.addresses
        ],
    }


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    kind: ImportKind
    profile_key: str
    cells: tuple[str, ...]  # in the layout's header order

    def csv(self) -> bytes:
        return csv_line(self.cells)


@dataclass(frozen=True, slots=True)
class Routed:
    route: Route
    customer_id: int
    rows: tuple[Row, ...] = ()
    state: SyncState | None = None  # the customer's state once the rows are imported
    reason: str = ""


def cell(value: JSON) -> str:
    """A mapped attribute value as CSV text (null is an empty cell: a cleared value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_line(cells: Sequence[str]) -> bytes:
    """One CSV record (RFC 4180): a field with a comma, quote or line break is quoted, quotes doubled."""
    return (",".join(_quoted(c) for c in cells) + "\r\n").encode()


def _quoted(text: str) -> str:
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def refusal(layout: Layout, values: Mapping[str, JSON]) -> str | None:
    """Why APSIS would reject a row with these attribute values, or None."""
    for version_id in layout.attributes:
        value = values.get(version_id)
        if value is None:
            continue
        text = cell(value)
        if version_id in layout.emails and not _EMAIL_RE.match(text):
            return f"attribute {version_id}: not an email address"
        if version_id in layout.mobiles and not _MOBILE_RE.match(text):
            return f"attribute {version_id}: not an E.164 phone number (+ and 8-15 digits)"
        if len(text) > MAX_VALUE_CHARS:
            return f"attribute {version_id}: value of {len(text)} characters (at most {MAX_VALUE_CHARS})"
    return None


def route_customer(
    shop: Shop,
    stored: SyncState | None,
    snapshot: CustomerSnapshot,
    address_attributes: AddressAttributes,
    files: Mapping[tuple[str, ImportKind], Layout],
) -> Routed:
    """Where one customer of an import full sync goes (see the module docstring)."""
    cid = snapshot.id
    plan = plan_sync(shop, stored, snapshot, address_attributes=address_attributes)
    if plan.stale or plan.state is None:
        return Routed("stale", cid)
    if plan.tied:
        return Routed("per_profile", cid, reason="the state's updated_at, other values")
    state = plan.state
    if not state.sections:
        return Routed("skipped", cid, state=state)
    if stored is not None:
        if not plan.writes:
            return Routed("unchanged", cid, state=state)
        if any(isinstance(w, ConsentWrite) for w in plan.writes):
            return Routed("per_profile", cid, reason="consent changed")
        if address_changes(stored, state):
            return Routed("per_profile", cid, reason="address changed")
    rows: list[Row] = []
    sections = {s.discriminator: s for s in shop.sections}
    for discriminator in state.sections:
        section = sections[discriminator]
        values = plan.mapped[discriminator]  # the merchant's mapping and the channels' addresses
        inn = files[(discriminator, "in")]
        if any(v not in values for v in inn.attributes):
            return Routed("per_profile", cid, reason="a mapped field is unknown")
        reason = refusal(inn, values)
        if reason is not None:
            return Routed("refused", cid, reason=reason)
        decided = _decisions(section, state, stored)
        for layout in (inn, files.get((discriminator, "out"))):
            if layout is None:
                continue
            wanted = OPT_IN if layout.kind == "in" else OPT_OUT
            marks = [CONSENT_YES if decided.get(key) == wanted else "" for key in layout.consents]
            if layout.kind == "out" and not any(marks):
                continue
            cells = (str(cid), *(cell(values[v]) for v in layout.attributes), *marks)
            rows.append(Row(discriminator, layout.kind, str(cid), cells))
    return Routed("import", cid, tuple(rows), state)


def _decisions(section: Section, state: SyncState, stored: SyncState | None) -> dict[tuple[str, str], str]:
    """(channel, topic) -> the consent type Shopify's state decides (the per-profile decisions)."""
    paths = {"email": "email_marketing_consent.state", "sms": "sms_marketing_consent.state"}
    out: dict[tuple[str, str], str] = {}
    for mapping in section.consents:
        now = state.fields.get(paths[mapping.channel], UNKNOWN)
        before = stored.fields.get(paths[mapping.channel], UNKNOWN) if stored else UNKNOWN
        for topic, kind in mapped_decisions(mapping, now, before).items():
            out[(mapping.channel_discriminator, topic)] = kind
    return out
