"""The plan: installation + last state + new snapshot -> ordered APSIS writes and the new state.

Ordering and merging:
- A snapshot whose `updated_at` is older than the state's (or a tags change older than the
  last tags applied) changes nothing: empty plan, state unchanged (`Plan.stale`).
- Shopify's `updated_at` has whole seconds: a snapshot with the state's very `updated_at` and
  another value for a field the state knows cannot be ordered by it (two edits in one second,
  one read by a full sync before the other's webhook was applied). It is planned as newer, as a
  webhook delivered in order is, and flagged (`Plan.tied`): the worker reads the customer
  instead of trusting a snapshot whose read time it does not know.
- Fields merge per group (customer, tags, email consent, sms consent), each ordered by its own
  time: a value older than its group's last time is ignored; an unknown value never overwrites
  a known one. Without a time, a customer field (the address on a consent topic) only fills
  an unknown, while a consent or tags value applies (an opt-out must never be lost).
- Consent times are the consent's own change time (`consent_updated_at`), else the customer's
  `updated_at`; a tags change uses its `occurredAt`.
- A tags change on tags never known leaves them unknown (a delta is not the full list): the path
  shows in `Plan.unknown` so the worker can fetch the customer.

Sections:
- A customer is in every section whose conditions hold on the merged fields; when a condition's
  field was never known, the previous membership stays.
- A customer that stops meeting a section's conditions stops being synced there: no more
  attribute or consent writes for that section; the profile, its attributes and its consents in
  APSIS stay as they are. Coming back writes everything again.

Writes, in order: one attribute patch per section (only the changed values, `null` clears;
`force=True` rewrites every known value, still never over a newer state); then per section the
consent writes (Consent 2.0: per profile, channel and topic; see `mappings.consent`).

Email and phone changes (Consent 2.0): the profile's email/mobile attribute is what a channel sends
to, and consent stays on the profile, so a change is an attribute patch and nothing else: the new
address has every topic the profile had, the old one gets nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings.attributes import changed_attributes, map_attributes
from mappings.conditions import matches
from mappings.consent import consent_writes, mapped_decisions
from mappings.installation import Section, Shop
from mappings.snapshot import (
    JSON,
    LEGACY_CONSENT_PATHS,
    UNKNOWN,
    CustomerSnapshot,
    TagsChange,
    plain,
    resolve,
)
from mappings.state import SyncState
from mappings.writes import AttributePatch, ConsentKey, ConsentType, ProfileDelete, Write

ALWAYS_TRACKED = ("email", "phone", "tags", "email_marketing_consent.state", "sms_marketing_consent.state")
_ADDRESS_PATH = {"email": "email", "sms": "phone"}
_STATE_PATH = {"email": "email_marketing_consent.state", "sms": "sms_marketing_consent.state"}


@dataclass(frozen=True, slots=True)
class Plan:
    writes: tuple[Write, ...]
    state: SyncState | None
    stale: bool = False
    unknown: frozenset[str] = field(default_factory=frozenset)  # used paths never known
    tied: bool = False  # the state's `updated_at`, another known value: order unknown
    # Per section the customer is in: `{version id: value}` of every mapped attribute whose field
    # is known (what the profile should hold; the import rows are built from it).
    mapped: Mapping[str, Mapping[str, JSON]] = field(default_factory=dict)


# Per section: {"email" | "sms": the version id of the attribute that channel sends to}.
AddressAttributes = Mapping[str, Mapping[str, str]]


def tracked_paths(shop: Shop) -> frozenset[str]:
    """Every field path the installation reads: conditions, attributes, addresses, consent."""
    paths = set(ALWAYS_TRACKED)
    for section in shop.sections:
        paths.update(c.field for c in section.conditions)
        paths.update(section.attributes)
    return frozenset(paths)


def unknown_paths(shop: Shop, state: SyncState | None) -> frozenset[str]:
    """The paths the installation reads that `state` has never known (every one without a state).

    Only a read of the whole customer can fill them once the state is dated: a snapshot older
    than the state is stale as a whole, since it cannot tell whether a field changed in between
    (a 2025-01 `customers/update` without tags is what Shopify sends when tags change).
    """
    known = state.fields if state is not None else {}
    return frozenset(p for p in tracked_paths(shop) if known.get(p, UNKNOWN) is UNKNOWN)


@functools.cache  # a few paths per installation, asked for every customer
def group_of(path: str) -> str:
    head = path.partition(".")[0]
    if head == "tags":
        return "tags"
    if head == "email_marketing_consent" or head in LEGACY_CONSENT_PATHS:
        return "email_consent"
    if head == "sms_marketing_consent":
        return "sms_consent"
    return "customer"


@dataclass(frozen=True, slots=True)
class _Prepared:
    customer_id: int
    fields: dict[str, Any]
    times: dict[str, datetime]
    sections: tuple[str, ...]
    unknown: frozenset[str]
    tied: bool


def _observe(
    update: CustomerSnapshot | TagsChange, previous: SyncState | None, paths: frozenset[str]
) -> tuple[dict[str, Any], dict[str, datetime | None]]:
    if isinstance(update, TagsChange):
        before = previous.fields.get("tags", UNKNOWN) if previous else UNKNOWN
        tags = tuple(before) if isinstance(before, list | tuple) else UNKNOWN
        return {"tags": plain(update.apply(tags))}, {"tags": update.occurred_at}
    values = {path: plain(resolve(update, path)) for path in paths}
    updated = update.updated_at if isinstance(update.updated_at, datetime) else None
    times: dict[str, datetime | None] = {"customer": updated, "tags": updated}
    for group, consent in (
        ("email_consent", update.email_marketing_consent),
        ("sms_consent", update.sms_marketing_consent),
    ):
        own = getattr(consent, "updated_at", None)
        times[group] = own if isinstance(own, datetime) else updated
    return values, times


def _prepare(
    shop: Shop, previous: SyncState | None, update: CustomerSnapshot | TagsChange
) -> _Prepared | None:
    """Merged fields, times and membership; None when the update is stale."""
    cid = update.customer_id if isinstance(update, TagsChange) else update.id
    if previous is not None and previous.customer_id != cid:
        raise ValueError(f"state of customer {previous.customer_id} given for customer {cid}")
    old_times = dict(previous.times) if previous else {}
    if isinstance(update, TagsChange):
        when, last = update.occurred_at, old_times.get("tags")
    else:
        when = update.updated_at if isinstance(update.updated_at, datetime) else None
        last = old_times.get("customer")
    if when is not None and last is not None and when < last:
        return None
    paths = tracked_paths(shop)
    values, new_times = _observe(update, previous, paths)
    tied = (
        previous is not None
        and not isinstance(update, TagsChange)
        and when is not None
        and when == last
        and any(_differs(path, previous.fields.get(path, UNKNOWN), value) for path, value in values.items())
    )
    fields = dict(previous.fields) if previous else {}
    times = dict(old_times)
    for path, value in values.items():
        if value is UNKNOWN:
            continue
        group = group_of(path)
        t_new, t_old = new_times.get(group), old_times.get(group)
        if t_new is None:
            # Untimed: a consent-topic address only fills in; an untimed consent or tags
            # delta still applies, since losing an opt-out is worse than misordering one.
            if group != "customer" or fields.get(path, UNKNOWN) is UNKNOWN:
                fields[path] = value
        elif t_old is None or t_new >= t_old:
            fields[path] = value
            if t_old is None or t_new > t_old:
                times[group] = t_new
    was_in = set(previous.sections) if previous else set()
    sections = []
    for section in shop.sections:
        member = matches(section.conditions, fields)
        if member or (member is None and section.discriminator in was_in):
            sections.append(section.discriminator)
    unknown = frozenset(p for p in paths if fields.get(p, UNKNOWN) is UNKNOWN)
    return _Prepared(cid, fields, times, tuple(sections), unknown, tied)


def _differs(path: str, known: Any, value: Any) -> bool:
    """Both values known and not the same (tags as a set: their order says nothing)."""
    if known is UNKNOWN or value is UNKNOWN:
        return False
    if group_of(path) == "tags" and isinstance(known, list) and isinstance(value, list):
        return {str(t).casefold() for t in known} != {str(t).casefold() for t in value}
    return bool(known != value)


def _address(fields: Mapping[str, Any], channel: str) -> Any:
    value = fields.get(_ADDRESS_PATH[channel], UNKNOWN)
    return value if value is UNKNOWN or isinstance(value, str) else None


def _last_address(previous: SyncState | None, channel: str) -> str | None:
    if previous is None:
        return None
    return previous.email if channel == "email" else previous.phone


def plan_sync(
    shop: Shop,
    previous: SyncState | None,
    update: CustomerSnapshot | TagsChange,
    *,
    address_attributes: AddressAttributes | None = None,
    force: bool = False,
) -> Plan:
    """The writes that bring APSIS in line with `update`, and the state after them.

    `address_attributes`: per section, the version ids of the profile attributes a channel sends
    to (`{"email": <com.apsis1.attributes.email version>, "sms": <...mobile version>}`), read
    from APSIS's definitions by the worker; a section that maps consent on a channel writes that
    attribute whether or not the merchant's mapping names it. `force` rewrites attributes only.
    """
    prepared = _prepare(shop, previous, update)
    if prepared is None:
        return Plan((), previous, stale=True)
    fields, profile_key = prepared.fields, str(prepared.customer_id)
    writes: list[Write] = []
    attributes: dict[str, Mapping[str, JSON]] = {}
    known: dict[str, Mapping[str, JSON]] = {}
    for section in shop.sections:
        if section.discriminator not in prepared.sections:
            continue
        extra = _channel_attributes(section, (address_attributes or {}).get(section.discriminator, {}))
        desired = known[section.discriminator] = map_attributes(section, fields, extra)
        written = previous.attributes.get(section.discriminator, {}) if previous else {}
        body = changed_attributes(desired, written, force=force)
        if body:
            writes.append(AttributePatch(section.discriminator, body, profile_key))
        mapped = {*section.attributes.values(), *extra.values()}
        attributes[section.discriminator] = {k: v for k, v in {**written, **desired}.items() if k in mapped}

    old_consents = previous.consents if previous else {}
    consents: dict[ConsentKey, ConsentType] = {}
    for section in shop.sections:
        if section.discriminator not in prepared.sections:
            continue
        for mapping in section.consents:
            state = fields.get(_STATE_PATH[mapping.channel], UNKNOWN)
            before = previous.fields.get(_STATE_PATH[mapping.channel], UNKNOWN) if previous else UNKNOWN
            desired_types = mapped_decisions(mapping, state, before)
            writes.extend(
                consent_writes(mapping, section.discriminator, profile_key, desired_types, old_consents)
            )
            for topic, kind in desired_types.items():
                consents[ConsentKey(section.discriminator, mapping.channel_discriminator, topic)] = kind

    email, phone = _address(fields, "email"), _address(fields, "sms")
    if email is UNKNOWN:
        email = _last_address(previous, "email")
    if phone is UNKNOWN:
        phone = _last_address(previous, "sms")
    keep = {  # consent records of the current sections' mapped channels
        (section.discriminator, mapping.channel_discriminator)
        for section in shop.sections
        if section.discriminator in prepared.sections
        for mapping in section.consents
    }
    merged = {key: kind for key, kind in old_consents.items() if (key.section, key.channel) in keep}
    merged.update(consents)
    state = SyncState(
        customer_id=prepared.customer_id,
        times=prepared.times,
        fields=fields,
        email=email,
        phone=phone,
        sections=prepared.sections,
        attributes=attributes,
        consents=merged,
    )
    return Plan(tuple(writes), state, unknown=prepared.unknown, tied=prepared.tied, mapped=known)


def _channel_attributes(section: Section, versions: Mapping[str, str]) -> dict[str, str]:
    """`{field path: version id}` of the address attributes the section's consent channels need."""
    return {
        _ADDRESS_PATH[mapping.channel]: versions[mapping.channel]
        for mapping in section.consents
        if mapping.channel in versions
    }


def address_changes(previous: SyncState | None, after: SyncState | None) -> list[str]:
    """The channels ("email", "sms") whose address the plan changes: the worker reads the new
    address's suppression then (an address change needs no consent write under Consent 2.0)."""
    if previous is None or after is None:
        return []
    changed = []
    if previous.email is not None and after.email != previous.email:
        changed.append("email")
    if previous.phone is not None and after.phone != previous.phone:
        changed.append("sms")
    return changed


def plan_delete(shop: Shop, customer_id: int) -> Plan:
    """`customers/delete`, `customers/redact`: delete the profile (its attributes and events).

    Under Consent 2.0 the profile's consents go with it; the worker removes the customer's state.
    """
    return Plan((ProfileDelete(shop.apsis.keyspace, str(customer_id)),), None)
