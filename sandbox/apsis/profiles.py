"""Profiles: attributes (merge patch keyed by version id), events, delete, and reading them back.

Profile state is kept in flat dictionaries of plain tuples and dicts of atomic values, which the
cyclic garbage collector stops tracking: with hundreds of thousands of profiles, full collections
over tracked objects would stall the event loop for 100 ms and more. (Tuple subclasses such as
NamedTuple stay tracked, hence plain tuples inside.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sandbox.apsis.catalog import CatalogMixin
from sandbox.apsis.definitions import EMAIL_ATTRIBUTE, MOBILE_ATTRIBUTE, SectionIndex
from sandbox.apsis.problems import ApiError
from sandbox.apsis.values import is_email, is_mobile, is_rfc3339, iso, kept_json, value_fits
from sandbox.apsis.writelog import WriteLogMixin

ProfileMeta = tuple[float, float, tuple[str, ...]]  # created at, updated at, sections with data


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A copy of one profile's state, for tests and `/_sandbox/`."""

    keyspace: str
    key: str
    attributes: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "keyspace": self.keyspace,
            "key": self.key,
            "attributes": self.attributes,
            "events": self.events,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class ProfilesMixin(CatalogMixin, WriteLogMixin):
    """Profile part of `Account`: validation as the real API, `ApiError` on bad input."""

    clock: Callable[[], float]
    strict_types: bool
    profiles: dict[tuple[str, str], ProfileMeta]  # (keyspace, key) -> meta
    attributes: dict[tuple[str, str, str], dict[str, Any]]  # (keyspace, key, section) -> values
    # (keyspace, key, section) -> events, each stored as JSON bytes (see the module docstring)
    events: dict[tuple[str, str, str], tuple[bytes, ...]]

    def _init_profiles(self, strict_types: bool) -> None:
        # Check attribute values against their attribute's type (off by default: any JSON value).
        # Email and mobile attribute values are always checked.
        self.strict_types = strict_types
        self.profiles = {}
        self.attributes = {}
        self.events = {}

    def _reset_profiles(self) -> None:
        self.profiles.clear()
        self.attributes.clear()
        self.events.clear()

    # ---- writes --------------------------------------------------------------------------

    def patch_attributes(self, keyspace: str, key: str, section: str, body: Any) -> None:
        index = self._section_index(keyspace, section)
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object keyed by attribute version id")
        versions = index.attribute_versions
        for version_id in body:
            deprecated = versions.get(version_id)
            if deprecated is None:
                raise ApiError(400, f"attribute version {version_id} does not exist in section {section}")
            if deprecated:
                raise ApiError(400, f"attribute version {version_id} is deprecated")
        _check_addresses(index, body)
        if self.strict_types:
            for version_id, value in body.items():
                kind = index.attribute_types[version_id]
                if value is not None and not value_fits(kind, value):
                    raise ApiError(400, f"attribute version {version_id} is of type {kind}, not {value!r}")
        now = self.clock()
        self._profile_for_write(keyspace, key, section, now)
        attributes = self.attributes.get((keyspace, key, section))
        if attributes is None:
            attributes = self.attributes[(keyspace, key, section)] = {}
        for version_id, value in body.items():
            if value is None:
                attributes.pop(version_id, None)
            else:
                attributes[version_id] = value
        self._log("attributes", (keyspace, key, section), body, now)

    def add_events(self, keyspace: str, key: str, section: str, body: Any) -> None:
        index = self._section_index(keyspace, section)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError(400, "body must be {items: [...]} with at least one event")
        versions = index.event_versions
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise ApiError(400, f"items[{n}] must be an object")
            if not is_rfc3339(item.get("event_time")):
                raise ApiError(
                    400,
                    f"items[{n}].event_time must be an RFC 3339 date-time, not {item.get('event_time')!r}",
                )
            version_id = item.get("version_id")
            deprecated = versions.get(version_id) if isinstance(version_id, str) else None
            if deprecated is None:
                raise ApiError(
                    400,
                    f"items[{n}].version_id: event version {version_id} does not exist in section {section}",
                )
            if deprecated:
                raise ApiError(400, f"items[{n}].version_id: event version {version_id} is deprecated")
            if not isinstance(item.get("data"), dict):
                raise ApiError(400, f"items[{n}].data must be an object")
        now = self.clock()
        self._profile_for_write(keyspace, key, section, now)
        new = tuple(
            kept_json({"version_id": i["version_id"], "event_time": i["event_time"], "data": i["data"]})
            for i in items
        )
        self.events[(keyspace, key, section)] = self.events.get((keyspace, key, section), ()) + new
        summary = {"count": len(items), "version_ids": [item["version_id"] for item in items]}
        self._log("events", (keyspace, key, section), summary, now)

    def delete_profile(self, keyspace: str, key: str) -> bool:
        """Remove the profile with its attributes and events (consents: see `ConsentsMixin`)."""
        if keyspace not in self.keyspaces:
            raise ApiError(404, f"keyspace {keyspace} does not exist")
        meta = self.profiles.pop((keyspace, key), None)
        existed = meta is not None
        if meta is not None:
            for section in meta[2]:
                self.attributes.pop((keyspace, key, section), None)
                self.events.pop((keyspace, key, section), None)
            self._log("delete", (keyspace, key), {}, self.clock())
        return existed

    def _profile_for_write(self, keyspace: str, key: str, section: str, now: float) -> None:
        meta = self.profiles.get((keyspace, key))
        if meta is None:
            self.profiles[(keyspace, key)] = (now, now, (section,))
        elif section in meta[2]:
            self.profiles[(keyspace, key)] = (meta[0], now, meta[2])
        else:
            self.profiles[(keyspace, key)] = (meta[0], now, (*meta[2], section))

    # ---- reads ---------------------------------------------------------------------------

    def get_attributes(self, keyspace: str, key: str, section: str) -> dict[str, Any]:
        self._section_index(keyspace, section)
        self._existing_profile(keyspace, key)
        return dict(self.attributes.get((keyspace, key, section), {}))

    def _existing_profile(self, keyspace: str, key: str) -> ProfileMeta:
        meta = self.profiles.get((keyspace, key))
        if meta is None:
            raise ApiError(404, f"profile {key} does not exist in keyspace {keyspace}")
        return meta

    def _address_attribute(
        self, keyspace: str, key: str, index: SectionIndex, versions: tuple[str, ...]
    ) -> str | None:
        """The profile's value of the email or mobile attribute in the section (current version first)."""
        values = self.attributes.get((keyspace, key, index.section.discriminator))
        if not values:
            return None
        for version_id in reversed(versions):
            value = values.get(version_id)
            if isinstance(value, str):
                return value
        return None

    def profile(self, keyspace: str, key: str) -> ProfileView | None:
        """A copy of the profile: attributes and events by section; None when there is none."""
        meta = self.profiles.get((keyspace, key))
        if meta is None:
            return None
        attributes = {
            s: dict(self.attributes[(keyspace, key, s)])
            for s in meta[2]
            if (keyspace, key, s) in self.attributes
        }
        events = {
            s: [orjson.loads(e) for e in self.events[(keyspace, key, s)]]
            for s in meta[2]
            if (keyspace, key, s) in self.events
        }
        return ProfileView(
            keyspace=keyspace,
            key=key,
            attributes=attributes,
            events=events,
            created_at=meta[0],
            updated_at=meta[1],
        )

    def profile_keys(self, keyspace: str | None = None) -> list[tuple[str, str]]:
        return [k for k in self.profiles if keyspace is None or k[0] == keyspace]


def _check_addresses(index: SectionIndex, body: dict[str, Any]) -> None:
    """The email attribute takes an email address, the mobile attribute an E.164 number (or null)."""
    for versions, fits, discriminator, what in (
        (index.email_versions, is_email, EMAIL_ATTRIBUTE, "an email address"),
        (index.mobile_versions, is_mobile, MOBILE_ATTRIBUTE, "an E.164 phone number (+ and 8-15 digits)"),
    ):
        for version_id in versions:
            value = body.get(version_id)
            if value is not None and not fits(value):
                raise ApiError(
                    400, f"attribute version {version_id} ({discriminator}) must be {what}, not {value!r}"
                )
