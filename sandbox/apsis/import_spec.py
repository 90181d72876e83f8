"""The body of `POST /v2/audience/sections/{s}/imports`, checked as APSIS checks it.

Checks, in order, each answering problem JSON: the keyspace exists (404, like the profile routes),
it may manage consent (`manage_subscriptions`; 403, the reference: "must be true on the keyspace
used"), every attribute version exists and is current (400, like the attribute PATCH) and is
writable through the keyspace (403), every consent names a known channel (400), a known topic
(404, like the consent POST) of that channel (400), and type opt-in or opt-out (400).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sandbox.apsis.account import Account
from sandbox.apsis.consents import WRITABLE_TYPES
from sandbox.apsis.definitions import CHANNELS, SectionIndex
from sandbox.apsis.problems import ApiError


@dataclass(frozen=True, slots=True)
class ConsentRule:
    field: str  # the column: a row holding a yes value gets the consent
    channel: str
    topic: str
    type: str
    resubscribe_if_opted_out: bool


@dataclass(frozen=True, slots=True)
class ConsentGroup:
    address_field: str
    rules: tuple[ConsentRule, ...]


@dataclass(frozen=True, slots=True)
class ImportSpec:
    keyspace: str
    key_field: str
    attributes: tuple[tuple[str, str], ...]  # (column, attribute version id)
    consents: tuple[ConsentGroup, ...]
    update_existing_profiles: bool
    clear_existing_attributes: bool

    @property
    def columns(self) -> set[str]:
        names = {self.key_field, *(column for column, _ in self.attributes)}
        for group in self.consents:
            names.add(group.address_field)
            names.update(rule.field for rule in group.rules)
        return names


def parse_import_spec(
    account: Account, index: SectionIndex, body: Any, read_only: Collection[str] = ()
) -> ImportSpec:
    """The checked spec, or `ApiError` naming the first problem."""
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    mapping = body.get("keyspace_mapping")
    if not isinstance(mapping, dict):
        raise ApiError(400, "keyspace_mapping is required: {keyspace_discriminator, field_selector}")
    keyspace = _text(mapping, "keyspace_discriminator", "keyspace_mapping")
    key_field = _text(mapping, "field_selector", "keyspace_mapping")
    found = account.keyspaces.get(keyspace)
    if found is None:
        raise ApiError(404, f"keyspace {keyspace} does not exist")
    if not found.manage_subscriptions:
        raise ApiError(
            403, f"consent cannot be managed through keyspace {keyspace} (manage_subscriptions is false)"
        )
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "options must be an object")
    update_existing = _flag(options, "update_existing_profiles", True)
    clear_existing = _flag(options, "clear_existing_attributes", False)
    attributes: list[tuple[str, str]] = []
    for n, item in enumerate(_list(body, "attribute_mappings")):
        where = f"attribute_mappings[{n}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object")
        column = _text(item, "field_selector", where)
        version = item.get("attribute_version_id")
        version = str(version) if isinstance(version, str | int) and not isinstance(version, bool) else None
        deprecated = index.attribute_versions.get(version) if version is not None else None
        if version is None or deprecated is None:
            raise ApiError(
                400,
                f"{where}.attribute_version_id: attribute version {version} does not exist in section "
                f"{index.section.discriminator}",
            )
        if deprecated:
            raise ApiError(400, f"{where}.attribute_version_id: attribute version {version} is deprecated")
        if version in read_only:
            raise ApiError(403, f"attribute version {version} is not writable through keyspace {keyspace}")
        attributes.append((column, version))
    groups = tuple(_consent_group(index, item, n) for n, item in enumerate(_list(body, "consent_mappings")))
    return ImportSpec(keyspace, key_field, tuple(attributes), groups, update_existing, clear_existing)


def _consent_group(index: SectionIndex, item: Any, n: int) -> ConsentGroup:
    where = f"consent_mappings[{n}]"
    if not isinstance(item, dict):
        raise ApiError(400, f"{where} must be an object")
    address_field = _text(item, "address_field_selector", where)
    rules: list[ConsentRule] = []
    for m, consent in enumerate(_list(item, "consents", where)):
        at = f"{where}.consents[{m}]"
        if not isinstance(consent, dict):
            raise ApiError(400, f"{at} must be an object")
        column = _text(consent, "field_selector", at)
        channel = consent.get("channel_discriminator")
        if channel not in CHANNELS:
            raise ApiError(400, f"{at}: channel {channel!r} does not exist (channels: {', '.join(CHANNELS)})")
        assert isinstance(channel, str)
        topic = _text(consent, "topic_discriminator", at)
        found = index.topics.get(topic)
        if found is None:
            raise ApiError(
                404, f"{at}: topic {topic} does not exist in section {index.section.discriminator}"
            )
        if found[1].channel is not None and found[1].channel != channel:
            raise ApiError(
                400, f"{at}: topic {topic} is specific to channel {found[1].channel}, not {channel}"
            )
        kind = consent.get("type")
        if kind not in WRITABLE_TYPES:
            raise ApiError(400, f"{at}.type must be opt-in or opt-out, not {kind!r}")
        assert isinstance(kind, str)
        resubscribe = _flag(consent, "resubscribe_if_opted_out", False)
        rules.append(ConsentRule(column, channel, topic, kind, resubscribe))
    if not rules:
        raise ApiError(400, f"{where}.consents must list at least one consent")
    return ConsentGroup(address_field, tuple(rules))


def _text(body: dict[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{where}.{name} is required (a non-empty string)")
    return value


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false")
    return value


def _list(body: dict[str, Any], name: str, where: str = "") -> list[Any]:
    value = body.get(name) or []
    if not isinstance(value, list):
        raise ApiError(400, f"{where + '.' if where else ''}{name} must be a list")
    return value
