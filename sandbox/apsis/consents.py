"""Consent 2.0: consent on the profile, per section, channel and topic; the v2 consents endpoints.

A consent has a type (`opt-in`, `opt-out`, and `confirmed-opt-in` / `pending-opt-in`, which only
APSIS itself gives: the API writes opt-in and opt-out), a source, a reason and when it changed.
The profile's consents go with it when it is deleted. Stored as plain tuples (GC-untracked, see
profiles.py): (keyspace, key) -> {(section, channel, topic): (type, source, reason, modified at)}.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.apsis.definitions import CHANNELS, channel_discriminator
from sandbox.apsis.problems import ApiError
from sandbox.apsis.profiles import ProfilesMixin
from sandbox.apsis.suppression import SuppressionMixin
from sandbox.apsis.values import address_channel, iso

WRITABLE_TYPES = ("opt-in", "opt-out")
CONSENT_TYPES = ("opt-in", "opt-out", "confirmed-opt-in", "pending-opt-in")
OPTED_IN = ("opt-in", "confirmed-opt-in")
DEFAULT_SOURCE = "One API"  # what APSIS records when a consent write names no source

_State = tuple[str, str, str, float]  # type, source, reason, modified at
_Key = tuple[str, str, str]  # section, channel, topic


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent of a profile in a section: the latest type on one channel and topic."""

    channel: str  # channel discriminator
    topic: str  # topic discriminator
    type: str
    source: str
    reason: str
    modified_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        """The item of `GET /v2/.../consents`."""
        return {
            "topic_discriminator": self.topic,
            "channel_discriminator": self.channel,
            "type": self.type,
            "source": self.source,
            "reason": self.reason,
            "modified_at": iso(self.modified_at),
        }


class ConsentsMixin(ProfilesMixin, SuppressionMixin):
    """Consent part of `Account`."""

    _consents: dict[tuple[str, str], dict[_Key, _State]]

    def _init_consents(self) -> None:
        self._consents = {}
        self._init_suppression()

    def _reset_consents(self) -> None:
        self._consents.clear()
        self._reset_suppression()

    # ---- the API -------------------------------------------------------------------------

    def post_consent(self, keyspace: str, key: str, section: str, body: Any) -> int:
        """`POST /v2/.../consents`: 201 created, 204 updated; ApiError (409, 404, 403, 400) else."""
        index = self._section_index(keyspace, section)
        if not self.keyspaces[keyspace].manage_subscriptions:
            raise ApiError(
                403, f"consent cannot be managed through keyspace {keyspace} (manage_subscriptions is false)"
            )
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        kind = body.get("type")
        if kind in CONSENT_TYPES and kind not in WRITABLE_TYPES:
            raise ApiError(400, f"type {kind} is not supported by the API yet: use opt-in or opt-out")
        if kind not in WRITABLE_TYPES:
            raise ApiError(400, f"type must be opt-in or opt-out, not {kind!r}")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "reason is required (a non-empty string)")
        source = body.get("source")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise ApiError(400, "source must be a non-empty string when given")
        channel = body.get("channel_discriminator")
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise ApiError(400, f"channel {channel!r} does not exist (channels: {', '.join(CHANNELS)})")
        topic = body.get("topic_discriminator")
        if not isinstance(topic, str) or not topic:
            raise ApiError(400, "topic_discriminator is required (a string)")
        self._existing_profile(keyspace, key)
        found = index.topics.get(topic)
        if found is None:
            raise ApiError(404, f"topic {topic} does not exist in section {section}")
        specific = found[1].channel
        if specific is not None and specific != channel:
            raise ApiError(400, f"topic {topic} is specific to channel {specific}, not {channel}")
        states = self._consents.setdefault((keyspace, key), {})
        before = states.get((section, channel, topic))
        if before is not None and (before[0] == kind or (before[0], kind) == ("confirmed-opt-in", "opt-in")):
            raise ApiError(
                409,
                f"transition from {before[0]} to {kind} is not supported "
                f"(topic {topic} on {channel} already has consent type {before[0]})",
            )
        now = self.clock()
        states[(section, channel, topic)] = (kind, source or DEFAULT_SOURCE, reason, now)
        self._profile_for_write(keyspace, key, section, now)
        sent = {name: body[name] for name in _BODY_FIELDS if body.get(name) is not None}
        self._log("consent", (keyspace, key, section), sent, now)
        return 201 if before is None else 204

    def get_consents(
        self,
        keyspace: str,
        key: str,
        section: str,
        consent_types: Iterable[str] = (),
        suppression_addresses: Iterable[str] = (),
    ) -> dict[str, Any]:
        """`GET /v2/.../consents`: `{items, suppressions}` (see the sandbox README for the shape)."""
        index = self._section_index(keyspace, section)
        wanted = set(consent_types)
        unknown = sorted(wanted - set(CONSENT_TYPES))
        if unknown:
            raise ApiError(
                400, f"consent_types: unknown type {unknown[0]!r} (types: {', '.join(CONSENT_TYPES)})"
            )
        self._existing_profile(keyspace, key)
        records = self.profile_consents(keyspace, key, section)
        items = [records[k].to_json() for k in sorted(records) if not wanted or records[k].type in wanted]
        addresses = [
            self._address_attribute(keyspace, key, index, index.email_versions),
            self._address_attribute(keyspace, key, index, index.mobile_versions),
            key if address_channel(key) is not None else None,
            *suppression_addresses,
        ]
        return {"items": items, "suppressions": self._suppressions_among(addresses)}

    def delete_profile(self, keyspace: str, key: str) -> bool:
        """Remove the profile with its attributes, events and consents."""
        existed = super().delete_profile(keyspace, key)
        self._consents.pop((keyspace, key), None)
        return existed

    # ---- in code, for tests --------------------------------------------------------------

    def profile_consents(self, keyspace: str, key: str, section: str) -> dict[tuple[str, str], ConsentRecord]:
        """The profile's consents in the section by (channel discriminator, topic); {} for none."""
        states = self._consents.get((keyspace, key))
        if not states:
            return {}
        return {
            (channel, topic): ConsentRecord(channel, topic, *state)
            for (s, channel, topic), state in states.items()
            if s == section
        }

    def opted_in_topics(self, keyspace: str, key: str, section: str, channel: str) -> list[str]:
        """Topics (sorted) with an opt-in or confirmed-opt-in on the channel (`email`, `sms` or full).

        Consent only: a suppression of the address is not taken into account here.
        """
        resolved = channel_discriminator(channel)
        records = self.profile_consents(keyspace, key, section)
        return sorted(t for (c, t), r in records.items() if c == resolved and r.type in OPTED_IN)

    def set_consent(
        self,
        keyspace: str,
        key: str,
        section: str,
        channel: str,
        topic: str,
        type: str,
        *,
        source: str = "APSIS One",
        reason: str = "Given in APSIS",
    ) -> None:
        """A consent given in APSIS itself (an unsubscribe link, a form): any of the four types.

        Creates nothing else (no profile, no write log entry). KeyError for an unknown profile,
        section or topic; ValueError for an unknown channel or type, or a topic of another channel.
        """
        if type not in CONSENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(CONSENT_TYPES)}, not {type!r}")
        resolved = channel_discriminator(channel)
        if (keyspace, key) not in self.profiles:
            raise KeyError(f"profile {key} does not exist in keyspace {keyspace}")
        index = self.sections.get(section)
        if index is None:
            raise KeyError(f"section {section} does not exist")
        found = index.topics.get(topic)
        if found is None:
            raise KeyError(f"topic {topic} does not exist in section {section}")
        if found[1].channel is not None and found[1].channel != resolved:
            raise ValueError(f"topic {topic} is specific to channel {found[1].channel}, not {resolved}")
        states = self._consents.setdefault((keyspace, key), {})
        states[(section, resolved, topic)] = (type, source, reason, self.clock())


_BODY_FIELDS = ("topic_discriminator", "channel_discriminator", "type", "reason", "source")
