"""The APSIS One half of `shopsync check`: credentials, keyspace, sections, versions, consent.

Consent 2.0 (APSIS One today): consent is the profile's, per channel and topic. For every section
that maps consent the check asks that
- every mapped topic exists in the section (`GET /v2/audience/sections/{s}/topics`) and, when the
  topic is specific to one channel, to the channel it is mapped on;
- the installation's keyspace manages consent (`manage_subscriptions`), or APSIS refuses every
  consent write (403);
- the section has a live version of the address attribute the channel sends to
  (`com.apsis1.attributes.email` for Email, `com.apsis1.attributes.mobile` for SMS): the sync
  writes it whether or not the merchant's attribute mapping names it.
A `consent_list` left in the installations file (Consent 1.0) is a warning naming the key: it is
ignored. No Consent 1.0 endpoint (consent lists, per-address consents) is called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.installation import CHANNELS, Section, Shop
from worker.apsis_client import ApsisClient
from worker.apsis_definitions import ADDRESS_ATTRIBUTES, current_versions
from worker.errors import ApiError, AuthError

Json = dict[str, Any]

CHANNEL_NAMES = {"email": "Email", "sms": "SMS"}
# What the sync writes to each channel's address attribute.
ADDRESS_VALUES = {"email": "the customer's email", "sms": "the customer's phone (E.164)"}


@dataclass
class Findings:
    """What one part of a check verified, the problems (one line each, saying what to fix) and
    the warnings (accepted, but worth changing)."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def unreachable(api: str, url: str, exc: ApiError) -> str:
    return f"{api}: cannot reach {url} ({exc}): check the URL in the installations file and the network"


def consent_list_warnings(shop: Shop) -> list[str]:
    """One line per `consent_list` key in the shop's consent mappings: ignored under Consent 2.0."""
    return [
        f"section[{index}].consents.{mapping.channel}.consent_list ({mapping.consent_list}) is ignored:"
        " APSIS Consent 2.0 has no consent lists (consent is per profile, channel and topic);"
        " remove the key, the topics stay"
        for index, section in enumerate(shop.sections)
        for mapping in section.consents
        if mapping.consent_list is not None
    ]


async def check_apsis(shop: Shop, client: ApsisClient) -> Findings:
    r = Findings(warnings=consent_list_warnings(shop))
    account = shop.apsis
    try:
        keyspaces = await client.keyspaces()
    except AuthError as exc:
        r.problems.append(
            f"APSIS: the API client {account.client_id} is refused ({exc.status}): set apsis.client_id and"
            " apsis.client_secret to an API key of the APSIS One account (Account settings > API keys)"
        )
        return r
    except ApiError as exc:
        r.problems.append(unreachable("APSIS", account.base_url, exc))
        return r
    r.checked.append(f"APSIS: credentials work (client {account.client_id})")
    _check_keyspace(shop, keyspaces, r)

    try:
        sections = {str(s.get("discriminator")) for s in await client.sections()}
    except ApiError as exc:
        r.problems.append(f"APSIS: cannot list the sections ({exc})")
        return r
    for index, section in enumerate(shop.sections):
        if section.discriminator not in sections:
            r.problems.append(
                f"APSIS: section {section.discriminator} does not exist: fix section[{index}].discriminator"
                f" (existing: {', '.join(sorted(sections)) or 'none'})"
            )
            continue
        try:
            await _check_section(client, section, index, r)
        except ApiError as exc:
            r.problems.append(
                f"APSIS: cannot read the definitions of section {section.discriminator} ({exc})"
            )
            continue
        r.checked.append(f"APSIS: section {section.discriminator} checked")
    return r


def _check_keyspace(shop: Shop, keyspaces: Sequence[Mapping[str, Any]], r: Findings) -> None:
    keyspace = shop.apsis.keyspace
    by_name = {str(k.get("discriminator")): k for k in keyspaces}
    found = by_name.get(keyspace)
    if found is None:
        r.problems.append(
            f"APSIS: keyspace {keyspace} does not exist: set apsis.keyspace to one of"
            f" {', '.join(by_name) or '(none)'}"
        )
        return
    r.checked.append(f"APSIS: keyspace {keyspace} exists")
    if not any(section.consents for section in shop.sections):
        return
    flag = found.get("manage_subscriptions")
    if flag is True:
        r.checked.append(f"APSIS: keyspace {keyspace} manages consent (manage_subscriptions is true)")
        return
    managing = [name for name, k in by_name.items() if k.get("manage_subscriptions") is True]
    state = "false" if flag is False else "not reported"
    instead = (
        f"one of {', '.join(managing)}"
        if managing
        else "a keyspace that manages it (none does in this account)"
    )
    r.problems.append(
        f"APSIS: keyspace {keyspace} does not manage consent (manage_subscriptions is {state}), so APSIS"
        f" refuses every consent write (403): set apsis.keyspace to {instead}"
    )


def _versions(definitions: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """version id -> (definition discriminator, version)."""
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for definition in definitions:
        for version in definition.get("versions") or ():
            out[str(version.get("id"))] = (str(definition.get("discriminator")), version)
    return out


def _version_problems(
    kind: str,
    key: str,
    mapped: Mapping[str, str],
    definitions: Sequence[Mapping[str, Any]],
    section: str,
) -> list[str]:
    problems: list[str] = []
    versions = _versions(definitions)
    live = current_versions(definitions)
    for name, version_id in mapped.items():
        found = versions.get(version_id)
        if found is None:
            problems.append(
                f"APSIS: {kind} version {version_id} ({key}.{name}) does not exist in section {section}:"
                f" map {name} to an existing {kind} version id"
            )
            continue
        discriminator, version = found
        if version.get("deprecated_at") is not None:
            current = live.get(discriminator)
            use = (
                f"use version {current} of {discriminator}"
                if current
                else f"{discriminator} has no live version"
            )
            problems.append(
                f"APSIS: {kind} version {version_id} ({key}.{name}) is deprecated since"
                f" {version.get('deprecated_at')}: {use}"
            )
    return problems


async def _check_section(client: ApsisClient, section: Section, index: int, r: Findings) -> None:
    s = section.discriminator
    key = f"section[{index}]"
    attributes, events, topics = await asyncio.gather(
        client.attributes(s), client.events(s), _topics(client, section)
    )
    r.problems += _version_problems("attribute", f"{key}.attributes", section.attributes, attributes, s)
    mapped_events = {
        name: v
        for name, v in (("order", section.events.order), ("order_line", section.events.order_line))
        if v is not None
    }
    r.problems += _version_problems("event", f"{key}.events", mapped_events, events, s)
    _check_topics(section, index, topics, r)
    _check_address_attributes(section, index, attributes, r)


async def _topics(client: ApsisClient, section: Section) -> list[Json]:
    return await client.topics(section.discriminator) if section.consents else []


def _channel_name(discriminator: str) -> str:
    short = {v: k for k, v in CHANNELS.items()}.get(discriminator)
    return CHANNEL_NAMES[short] if short else discriminator


def _check_topics(section: Section, index: int, topics: Sequence[Mapping[str, Any]], r: Findings) -> None:
    """Every mapped topic exists in the section and is not specific to another channel."""
    s = section.discriminator
    by_name = {str(t.get("discriminator")): t for t in topics}
    for mapping in section.consents:
        where = f"section[{index}].consents.{mapping.channel}.topics"
        channel = mapping.channel_discriminator
        name = CHANNEL_NAMES[mapping.channel]
        usable = sorted(d for d, t in by_name.items() if t.get("channel_discriminator") in (None, channel))
        existing = f"{name} topics: {', '.join(usable) or 'none'}"
        wrong = 0
        for topic in mapping.topics:
            found = by_name.get(topic)
            if found is None:
                r.problems.append(
                    f"APSIS: topic {topic} does not exist in section {s}: fix {where} ({existing})"
                )
                wrong += 1
                continue
            only = found.get("channel_discriminator")
            if only is not None and only != channel:
                other = {v: k for k, v in CHANNELS.items()}.get(str(only))
                move = f"move it to section[{index}].consents.{other}.topics or " if other else ""
                r.problems.append(
                    f"APSIS: topic {topic} of section {s} is for the {_channel_name(str(only))} channel only,"
                    f" not {name}: {move}fix {where} ({existing})"
                )
                wrong += 1
        if not wrong:
            r.checked.append(
                f"APSIS: section {s}: the {name} topics {', '.join(mapping.topics)} exist for {name}"
            )


def _check_address_attributes(
    section: Section, index: int, attributes: Sequence[Mapping[str, Any]], r: Findings
) -> None:
    """The attribute each consent channel sends to has a live version: the sync writes it."""
    s = section.discriminator
    live = current_versions(attributes)
    known = {str(a.get("discriminator")) for a in attributes}
    for mapping in section.consents:
        attribute = ADDRESS_ATTRIBUTES[mapping.channel]
        name = CHANNEL_NAMES[mapping.channel]
        version = live.get(attribute)
        if version is None:
            why = "has only deprecated versions of" if attribute in known else "has no attribute"
            r.problems.append(
                f"APSIS: section {s} {why} {attribute}, the address {name} consent is sent to: add a live"
                f" version of it to the section in APSIS One, or remove section[{index}].consents.{mapping.channel}"
            )
            continue
        r.checked.append(
            f"APSIS: section {s}: {name} consent is sent to {attribute} (version {version}); the sync writes"
            f" it with {ADDRESS_VALUES[mapping.channel]} whether or not section[{index}].attributes maps it"
        )
