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
    """`POST /audience/channels/{channel}/addresses/{address}/consents`."""

    channel: str  # channel discriminator, e.g. com.apsis1.channels.email
    address: str
    section: str
    consent_list: str
    topic: str
    type: ConsentType


@dataclass(frozen=True, slots=True)
class ProfileDelete:
    """`DELETE /audience/keyspaces/{keyspace}/profiles/{profile_key}`."""

    keyspace: str
    profile_key: str


Write: TypeAlias = AttributePatch | ConsentWrite | ProfileDelete


class AddressList(NamedTuple):
    """One consent list of one address: what the worker reads evaluations for."""

    channel: str
    address: str
    section: str
    consent_list: str


class ConsentKey(NamedTuple):
    channel: str
    address: str
    section: str
    consent_list: str
    topic: str
