"""APSIS One account definitions: keyspaces, sections, attributes, consent lists, topics, events.

Plain dataclasses, so a test can build exactly the account it needs. `to_json` gives the shape the
definitions endpoints answer with (`{items: [...]}` members); version ids are strings, as the
installations file holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EMAIL_CHANNEL = "com.apsis1.channels.email"
SMS_CHANNEL = "com.apsis1.channels.sms"
CHANNELS = (EMAIL_CHANNEL, SMS_CHANNEL)
# Short names people type in the inspection API and `/_sandbox/` paths.
CHANNEL_ALIASES = {
    "email": EMAIL_CHANNEL,
    "sms": SMS_CHANNEL,
    EMAIL_CHANNEL: EMAIL_CHANNEL,
    SMS_CHANNEL: SMS_CHANNEL,
}


def channel_discriminator(channel: str) -> str:
    """`email`/`sms` or a full channel discriminator -> the full discriminator."""
    try:
        return CHANNEL_ALIASES[channel]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}: use email, sms or {', '.join(CHANNELS)}") from None


@dataclass(slots=True)
class Version:
    id: str
    deprecated_at: str | None = None  # RFC 3339 time; None = current

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "deprecated_at": self.deprecated_at}


@dataclass(slots=True)
class Keyspace:
    discriminator: str
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator, "name": self.name or self.discriminator}


@dataclass(slots=True)
class Attribute:
    discriminator: str
    name: str
    type: str = "string"
    versions: list[Version] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator,
            "name": self.name,
            "type": self.type,
            "versions": [v.to_json() for v in self.versions],
        }


@dataclass(slots=True)
class Topic:
    discriminator: str
    name: str = ""
    channel: str | None = None  # channel-specific topic: consents must come on this channel

    def to_json(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator,
            "name": self.name or self.discriminator,
            "channel_discriminator": self.channel,
        }


@dataclass(slots=True)
class ConsentList:
    discriminator: str
    name: str = ""
    topics: list[Topic] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator, "name": self.name or self.discriminator}


@dataclass(slots=True)
class Event:
    discriminator: str
    name: str
    versions: list[Version] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator,
            "name": self.name,
            "versions": [v.to_json() for v in self.versions],
        }


@dataclass(slots=True)
class Section:
    discriminator: str
    name: str = ""
    attributes: list[Attribute] = field(default_factory=list)
    consent_lists: list[ConsentList] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator, "name": self.name or self.discriminator}


@dataclass(slots=True)
class Definitions:
    keyspaces: list[Keyspace] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


@dataclass(slots=True)
class SectionIndex:
    """Precompiled lookups for one section, rebuilt whenever definitions change."""

    section: Section
    # version id -> deprecated? (both attributes and events)
    attribute_versions: dict[str, bool]
    attribute_types: dict[str, str]
    event_versions: dict[str, bool]
    # consent list -> topic -> topic
    topics: dict[str, dict[str, Topic]]
    # cached JSON bodies of the definitions GETs
    attributes_body: bytes = b""
    consent_lists_body: bytes = b""
    events_body: bytes = b""
    topics_bodies: dict[str, bytes] = field(default_factory=dict)


def index_section(section: Section, dumps: Any) -> SectionIndex:
    return SectionIndex(
        section=section,
        attribute_versions={
            v.id: v.deprecated_at is not None for a in section.attributes for v in a.versions
        },
        attribute_types={v.id: a.type for a in section.attributes for v in a.versions},
        event_versions={v.id: v.deprecated_at is not None for e in section.events for v in e.versions},
        topics={cl.discriminator: {t.discriminator: t for t in cl.topics} for cl in section.consent_lists},
        attributes_body=dumps({"items": [a.to_json() for a in section.attributes]}),
        consent_lists_body=dumps({"items": [cl.to_json() for cl in section.consent_lists]}),
        events_body=dumps({"items": [e.to_json() for e in section.events]}),
        topics_bodies={
            cl.discriminator: dumps({"items": [t.to_json() for t in cl.topics]})
            for cl in section.consent_lists
        },
    )
