"""APSIS One account definitions: keyspaces, sections, attributes, topic folders, topics, events.

Plain dataclasses, so a test can build exactly the account it needs. `to_json` gives the shape the
definitions endpoints answer with (`{items: [...]}` members); version ids are strings, as the
installations file holds them.

Consent 2.0: topics live in folders (what Consent 1.0 called consent lists; the API no longer
serves them, only each topic's `folder_discriminator`). A topic is for every channel
(`channel=None`) or specific to one channel.
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
    manage_subscriptions: bool = True  # False: consent cannot be managed through this keyspace

    def to_json(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator,
            "name": self.name or self.discriminator,
            "manage_subscriptions": self.manage_subscriptions,
        }


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
    channel: str | None = None  # None: a topic of every channel; else consents only on this channel

    def to_json(self, folder: str) -> dict[str, Any]:
        """The item of `GET /v2/audience/sections/{s}/topics`."""
        return {
            "discriminator": self.discriminator,
            "name": self.name or self.discriminator,
            "folder_discriminator": folder,
            "channel_discriminator": self.channel,
        }


@dataclass(slots=True)
class Folder:
    """A topic folder (the UI's name; Consent 1.0's consent list). Not served by the API itself."""

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
    folders: list[Folder] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator, "name": self.name or self.discriminator}


@dataclass(slots=True)
class Definitions:
    keyspaces: list[Keyspace] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


EMAIL_ATTRIBUTE = "com.apsis1.attributes.email"
MOBILE_ATTRIBUTE = "com.apsis1.attributes.mobile"


@dataclass(slots=True)
class SectionIndex:
    """Precompiled lookups for one section, rebuilt whenever definitions change."""

    section: Section
    # version id -> deprecated? (both attributes and events)
    attribute_versions: dict[str, bool]
    attribute_types: dict[str, str]
    event_versions: dict[str, bool]
    # topic discriminator -> (folder discriminator, topic)
    topics: dict[str, tuple[str, Topic]]
    # version ids of the email and mobile attributes (every version, current one last)
    email_versions: tuple[str, ...] = ()
    mobile_versions: tuple[str, ...] = ()
    # cached JSON bodies of the definitions GETs
    attributes_body: bytes = b""
    events_body: bytes = b""
    topics_body: bytes = b""


def _versions_of(section: Section, discriminator: str) -> tuple[str, ...]:
    """Every version id of one attribute, deprecated ones first, the current one last."""
    for attribute in section.attributes:
        if attribute.discriminator == discriminator:
            versions = sorted(attribute.versions, key=lambda v: v.deprecated_at is None)
            return tuple(v.id for v in versions)
    return ()


def index_section(section: Section, dumps: Any) -> SectionIndex:
    topics: dict[str, tuple[str, Topic]] = {}
    for folder in section.folders:
        for topic in folder.topics:
            if topic.discriminator in topics:
                raise ValueError(f"topic {topic.discriminator} twice in section {section.discriminator}")
            if topic.channel is not None and topic.channel not in CHANNELS:
                raise ValueError(f"topic {topic.discriminator}: unknown channel {topic.channel}")
            topics[topic.discriminator] = (folder.discriminator, topic)
    return SectionIndex(
        section=section,
        attribute_versions={
            v.id: v.deprecated_at is not None for a in section.attributes for v in a.versions
        },
        attribute_types={v.id: a.type for a in section.attributes for v in a.versions},
        event_versions={v.id: v.deprecated_at is not None for e in section.events for v in e.versions},
        topics=topics,
        email_versions=_versions_of(section, EMAIL_ATTRIBUTE),
        mobile_versions=_versions_of(section, MOBILE_ATTRIBUTE),
        attributes_body=dumps({"items": [a.to_json() for a in section.attributes]}),
        events_body=dumps({"items": [e.to_json() for e in section.events]}),
        topics_body=dumps({"items": [topic.to_json(folder) for folder, topic in topics.values()]}),
    )
