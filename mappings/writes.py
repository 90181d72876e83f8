"""The APSIS One writes a plan is made of, in the order the worker must send them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

from mappings.snapshot import JSON

ConsentType: TypeAlias = Literal["opt-in", "opt-out"]
OPT_IN: ConsentType = "opt-in"
OPT_OUT: ConsentType = "opt-out"


@dataclass(frozen=True, slots=True)
class AttributePatch:
    """`PATCH .../profiles/{profile_key}/sections/{section}/attributes` with `body`."""

    section: str
    body: Mapping[str, JSON]
    profile_key: str = ""


@dataclass(frozen=True, slots=True)
class ConsentWrite:
    """Consent 2.0: `POST /v2/audience/keyspaces/{ks}/profiles/{profile_key}/sections/{section}/consents`.

    Consent belongs to the profile, per channel and topic; the address it reaches is the profile's
    email (or mobile) attribute, so an address change needs no consent write at all.
    """

    section: str
    channel: str  # channel discriminator, e.g. com.apsis1.channels.email
    topic: str
    type: ConsentType
    profile_key: str = ""


@dataclass(frozen=True, slots=True)
class ProfileDelete:
    """`DELETE /audience/keyspaces/{keyspace}/profiles/{profile_key}`."""

    keyspace: str
    profile_key: str


Write: TypeAlias = AttributePatch | ConsentWrite | ProfileDelete


class ConsentKey(NamedTuple):
    """One consent of a profile: what the sync state remembers the last written type of."""

    section: str
    channel: str
    topic: str
