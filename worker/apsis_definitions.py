"""Reading APSIS One definitions: live attribute and event versions, channel discriminators, and
the address attributes each consent channel sends to (Consent 2.0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mappings.installation import CHANNELS

# The profile attribute a channel sends to: APSIS's default attributes.
ADDRESS_ATTRIBUTES = {"email": "com.apsis1.attributes.email", "sms": "com.apsis1.attributes.mobile"}


def current_version(definition: Mapping[str, Any]) -> str | None:
    """The id of the definition's version that is not deprecated (the newest such one), or None."""
    live = [v for v in definition.get("versions") or () if v.get("deprecated_at") is None]
    return str(live[-1]["id"]) if live else None


def current_versions(definitions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """discriminator -> live version id, for attribute or event definitions."""
    out: dict[str, str] = {}
    for definition in definitions:
        version = current_version(definition)
        if version is not None and definition.get("discriminator"):
            out[str(definition["discriminator"])] = version
    return out


def channel_discriminator(channel: str) -> str:
    """`email`/`sms` or a full discriminator, as the discriminator."""
    return CHANNELS.get(channel, channel)


def address_versions(versions: Mapping[str, str]) -> dict[str, str]:
    """`{"email" | "sms": version id}` of the channels' address attributes that the section has
    (from `current_versions` of its attributes)."""
    return {
        channel: versions[discriminator]
        for channel, discriminator in ADDRESS_ATTRIBUTES.items()
        if discriminator in versions
    }
