"""What the worker remembers per customer between syncs (kept in Redis as JSON).

- `times`: the newest time applied per field group: `customer` (the customer's `updated_at`),
  `tags`, `email_consent`, `sms_consent` (their own change times). Ordering is per group.
- `fields`: the last known value (JSON form) of every path the installation uses, so a payload
  that leaves a field out is judged on what was known before.
- `email` / `phone`: the addresses consent was last synced for (an email change compares to it).
- `sections`: sections the customer is in; `attributes`: per section, the values last written
  per attribute version id; `consents`: the consent type last written (or found in APSIS) per
  (section, channel, topic) of the profile (Consent 2.0).

Format versions: 2 (Consent 2.0, profile consents). Version 1 (Consent 1.0) kept consents per
address and consent list; reading it keeps the records of the addresses the profile has now
(the ones APSIS moved onto the profile when the account was migrated), so an upgraded deployment
plans no write for a consent that did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings.payload_values import parse_time
from mappings.snapshot import JSON, PayloadError, iso_utc
from mappings.writes import ConsentKey, ConsentType

GROUPS = ("customer", "tags", "email_consent", "sms_consent")


@dataclass(frozen=True, slots=True)
class SyncState:
    customer_id: int
    times: Mapping[str, datetime] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    email: str | None = None
    phone: str | None = None
    sections: tuple[str, ...] = ()
    attributes: Mapping[str, Mapping[str, JSON]] = field(default_factory=dict)
    consents: Mapping[ConsentKey, ConsentType] = field(default_factory=dict)

    @property
    def updated_at(self) -> datetime | None:
        """The last customer `updated_at` applied."""
        return self.times.get("customer")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 2,
            "customer_id": self.customer_id,
            "times": {group: iso_utc(when) for group, when in sorted(self.times.items())},
            "fields": dict(sorted(self.fields.items())),
            "email": self.email,
            "phone": self.phone,
            "sections": list(self.sections),
            "attributes": {s: dict(values) for s, values in self.attributes.items()},
            "consents": [[*key, kind] for key, kind in sorted(self.consents.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyncState:
        """Inverse of `to_dict`; a malformed dict raises `PayloadError` naming the key."""
        try:
            consents = _consents(data)
            times: dict[str, datetime] = {}
            for group, text in data.get("times", {}).items():
                when = parse_time(text, f"times.{group}")
                if when is not None:
                    times[group] = when
            return cls(
                customer_id=int(data["customer_id"]),
                times=times,
                fields=dict(data.get("fields", {})),
                email=data.get("email"),
                phone=data.get("phone"),
                sections=tuple(data.get("sections", ())),
                attributes={s: dict(v) for s, v in data.get("attributes", {}).items()},
                consents=consents,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, PayloadError):
                raise
            raise PayloadError("state", f"not a sync state: {exc}") from None


def consent_of(data: Mapping[str, Any], key: ConsentKey) -> ConsentType | None:
    """The consent a state in its JSON form (`to_dict`) records for `key`, read without building
    the whole `SyncState` (the import verification asks a million states once per topic)."""
    if data.get("v", 1) < 2:
        return _consents(data).get(key)
    section, channel, topic = key
    for row in data.get("consents", ()):
        if len(row) == 4 and row[2] == topic and row[1] == channel and row[0] == section:
            kind = row[3]
            return kind if kind in ("opt-in", "opt-out") else None
    return None


_CHANNEL_ADDRESS = {"com.apsis1.channels.email": "email", "com.apsis1.channels.sms": "phone"}


def _consents(data: Mapping[str, Any]) -> dict[ConsentKey, ConsentType]:
    version = data.get("v", 1)
    consents: dict[ConsentKey, ConsentType] = {}
    for row in data.get("consents", []):
        *key, kind = row
        if kind not in ("opt-in", "opt-out") or len(key) != (3 if version >= 2 else 5):
            raise PayloadError("consents", f"bad consent record {row!r}")
        if version >= 2:
            consents[ConsentKey(*key)] = kind
            continue
        channel, address, section, _consent_list, topic = key
        # Consent 1.0 records of a former address are history: that address is no longer the
        # profile's, and its consent did not move onto the profile.
        if address == data.get(_CHANNEL_ADDRESS.get(channel, "")):
            consents[ConsentKey(section, channel, topic)] = kind
    return consents
