"""The simulated APSIS One account: credentials, definitions, profiles, consents, and what happened.

Everything the HTTP app does goes through an `Account`, so tests configure the account in code
(definitions, limits, faults, a fake clock), run traffic through the real HTTP app, and read the
outcome back with the inspection methods (`profile`, `consents`, `opted_in_topics`,
`request_count`, `writes`).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from sandbox.apsis.definitions import (
    EMAIL_CHANNEL,
    SMS_CHANNEL,
    Attribute,
    ConsentList,
    Definitions,
    Event,
    Keyspace,
    Section,
    SectionIndex,
    Topic,
    Version,
    channel_discriminator,
    index_section,
)
from sandbox.apsis.faults import Faults
from sandbox.apsis.limits import SlidingWindow
from sandbox.apsis.problems import ApiError

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
MAX_BODY = 102_400  # "at most 100 kB" per APSIS One
CONSENT_TYPES = ("opt-in", "opt-out")

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def value_fits(kind: str, value: object) -> bool:
    """Whether a JSON value suits an attribute type (string, integer, double, boolean, date)."""
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        if not isinstance(value, str):
            return False
        if _DATE_RE.match(value):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return False
            return True
        return is_rfc3339(value)
    return isinstance(value, str)


# Profile state and the write log are kept in flat dictionaries of plain tuples and dicts of
# atomic values, which the cyclic garbage collector stops tracking: with hundreds of thousands of
# profiles, full collections over tracked objects would stall the event loop for 100 ms and more.
# (Tuple subclasses such as NamedTuple stay tracked, hence plain tuples inside.)
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


@dataclass(slots=True)
class ConsentRecord:
    """The latest consent at one level for one address; times of the last opt-in and opt-out."""

    level: str  # account | section | topic
    section: str | None
    consent_list: str | None
    topic: str | None
    type: str
    updated_at: float
    opt_in_at: float | None = None
    opt_out_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "section_discriminator": self.section,
            "consent_list_discriminator": self.consent_list,
            "topic_discriminator": self.topic,
            "type": self.type,
            "updated_at": iso(self.updated_at),
            "opt_in_at": None if self.opt_in_at is None else iso(self.opt_in_at),
            "opt_out_at": None if self.opt_out_at is None else iso(self.opt_out_at),
        }


ConsentKey = tuple[str | None, str | None, str | None]  # (section, consent list, topic); None = above


class WriteRecord(NamedTuple):
    """One accepted write, in the order the account applied them."""

    seq: int
    kind: str  # attributes | events | consent | delete
    params: dict[str, str]  # path parameters (keyspace, profile_key, section | channel, address)
    summary: dict[str, Any]  # the body, or a summary of it
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "params": self.params,
            "summary": self.summary,
            "at": iso(self.at),
        }


class Account:
    """One APSIS One account. Configure in code; the HTTP app (`create_app`) serves it."""

    def __init__(
        self,
        definitions: Definitions | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: float = 86_400,
        token_limit_per_minute: int | None = 10,
        account_rate: int | None = 100,
        profile_rate: int | None = 10,
        max_body: int = MAX_BODY,
        max_write_log: int | None = 1_000_000,
        delete_missing_status: int = 404,
        strict_types: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.definitions = definitions if definitions is not None else Definitions()
        self.clients: dict[str, str] = {client_id: client_secret}
        self.token_lifetime = token_lifetime
        self.max_body = max_body
        # 404 (the profile was not there) or 204 (treat as done): see README of the sandbox.
        self.delete_missing_status = delete_missing_status
        # Check attribute values against their attribute's type (off by default: any JSON value).
        self.strict_types = strict_types
        self.clock = clock
        self.faults = Faults()
        self.account_limiter = SlidingWindow(account_rate, 1.0)
        self.profile_limiter = SlidingWindow(profile_rate, 1.0)
        self.token_limiter = SlidingWindow(token_limit_per_minute, 60.0)
        self.keyspaces: dict[str, Keyspace] = {}
        self.sections: dict[str, SectionIndex] = {}
        self.keyspaces_body = b""
        self.sections_body = b""
        # state
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expires at)
        self.profiles: dict[tuple[str, str], ProfileMeta] = {}  # (keyspace, key) -> meta
        self.attributes: dict[tuple[str, str, str], dict[str, Any]] = {}  # (keyspace, key, section)
        # (keyspace, key, section) -> events, each stored as JSON bytes (see ProfileMeta)
        self.events: dict[tuple[str, str, str], tuple[bytes, ...]] = {}
        self.address_consents: dict[tuple[str, str], dict[ConsentKey, ConsentRecord]] = {}
        # what happened
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route template, status)
        self.rate_limited: Counter[str] = Counter()  # account | profile | token
        self.faults_injected: Counter[str] = Counter()  # "500", "latency", "outage", ...
        # (seq, kind, path parameter values, summary as JSON bytes, time): GC-untracked tuples
        self._writes: deque[tuple[int, str, tuple[str, ...], bytes, float]] = deque(maxlen=max_write_log)
        self._write_seq = 0
        self.reindex()

    # ---- configuration -------------------------------------------------------------------

    def reindex(self) -> None:
        """Rebuild the lookups after changing `definitions` by hand (the helpers below call it)."""
        self.keyspaces = {k.discriminator: k for k in self.definitions.keyspaces}
        self.sections = {s.discriminator: index_section(s, orjson.dumps) for s in self.definitions.sections}
        self.keyspaces_body = orjson.dumps({"items": [k.to_json() for k in self.definitions.keyspaces]})
        self.sections_body = orjson.dumps({"items": [s.to_json() for s in self.definitions.sections]})

    def add_keyspace(self, discriminator: str, name: str = "") -> Keyspace:
        keyspace = Keyspace(discriminator, name)
        self.definitions.keyspaces.append(keyspace)
        self.reindex()
        return keyspace

    def add_section(self, section: Section) -> Section:
        self.definitions.sections = [
            s for s in self.definitions.sections if s.discriminator != section.discriminator
        ]
        self.definitions.sections.append(section)
        self.reindex()
        return section

    def section(self, discriminator: str) -> Section:
        return self.sections[discriminator].section

    def deprecate_version(self, section: str, version_id: str, at: str = "2024-01-01T00:00:00Z") -> None:
        """Mark an attribute or event version deprecated (KeyError when it does not exist)."""
        definition = self.section(section)
        versions = [v for a in definition.attributes for v in a.versions]
        versions += [v for e in definition.events for v in e.versions]
        for version in versions:
            if version.id == version_id:
                version.deprecated_at = at
                self.reindex()
                return
        raise KeyError(f"no version {version_id} in section {section}")

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.clients[client_id] = client_secret

    def set_rate_limits(
        self,
        *,
        account: int | Literal["keep"] | None = "keep",
        profile: int | Literal["keep"] | None = "keep",
        token_per_minute: int | Literal["keep"] | None = "keep",
    ) -> None:
        """Change limits (and start their windows afresh); None or 0 disables one."""
        for limiter, value in (
            (self.account_limiter, account),
            (self.profile_limiter, profile),
            (self.token_limiter, token_per_minute),
        ):
            if value != "keep":
                limiter.limit = value or None
                limiter.reset()

    def disable_rate_limits(self) -> None:
        self.set_rate_limits(account=None, profile=None, token_per_minute=None)

    def limits_json(self) -> dict[str, Any]:
        return {
            "account_per_second": self.account_limiter.limit,
            "profile_per_second": self.profile_limiter.limit,
            "token_per_minute": self.token_limiter.limit,
            "token_lifetime": self.token_lifetime,
            "max_body": self.max_body,
        }

    # ---- tokens --------------------------------------------------------------------------

    def check_client(self, client_id: str, client_secret: str) -> bool:
        secret = self.clients.get(client_id)
        return secret is not None and secret == client_secret

    def issue_token(self, client_id: str) -> tuple[str, int]:
        """A JWT-shaped opaque token (not signed: nobody verifies it but the sandbox)."""
        now = self.clock()
        lifetime = self.token_lifetime
        header = _b64(b'{"alg":"none","typ":"JWT"}')
        payload = _b64(orjson.dumps({"sub": client_id, "iat": int(now), "exp": int(now + lifetime)}))
        token = f"{header}.{payload}.{_b64(os.urandom(24))}"
        self.tokens[token] = (client_id, now + lifetime)
        if len(self.tokens) > 1024:  # forget expired ones now and then
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        return token, int(lifetime)

    def token_valid(self, token: str) -> bool:
        entry = self.tokens.get(token)
        return entry is not None and entry[1] > self.clock()

    def revoke_tokens(self) -> int:
        """Every issued token stops working now (tokens expiring early); returns how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    # ---- profile operations (validation as the real API; ApiError on bad input) -----------

    def _section_index(self, keyspace: str, section: str) -> SectionIndex:
        if keyspace not in self.keyspaces:
            raise ApiError(404, f"keyspace {keyspace} does not exist")
        index = self.sections.get(section)
        if index is None:
            raise ApiError(404, f"section {section} does not exist")
        return index

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

    def get_attributes(self, keyspace: str, key: str, section: str) -> dict[str, Any]:
        self._section_index(keyspace, section)
        if (keyspace, key) not in self.profiles:
            raise ApiError(404, f"profile {key} does not exist in keyspace {keyspace}")
        return dict(self.attributes.get((keyspace, key, section), {}))

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
            orjson.dumps({"version_id": i["version_id"], "event_time": i["event_time"], "data": i["data"]})
            for i in items
        )
        self.events[(keyspace, key, section)] = self.events.get((keyspace, key, section), ()) + new
        summary = {"count": len(items), "version_ids": [item["version_id"] for item in items]}
        self._log("events", (keyspace, key, section), summary, now)

    def delete_profile(self, keyspace: str, key: str) -> bool:
        """Remove the profile with its attributes and events; consents belong to addresses and stay."""
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

    # ---- consents ------------------------------------------------------------------------

    @staticmethod
    def check_address(channel: str, address: str) -> None:
        if channel == EMAIL_CHANNEL:
            if not _EMAIL_RE.match(address):
                raise ApiError(400, f"address {address!r} is not an email address")
        elif channel == SMS_CHANNEL:
            if not _E164_RE.match(address):
                raise ApiError(400, f"address {address!r} is not an E.164 phone number")
        else:
            raise ApiError(404, f"channel {channel} does not exist")

    def add_consent(self, channel: str, address: str, body: Any) -> bool:
        """Record one consent; True when it changed anything (the API answers 204, else 200).

        Levels as in APSIS One: opt-in only on a topic; opt-out on a topic, a whole section
        (no consent list or topic given) or the whole account (no section given either).
        """
        self.check_address(channel, address)
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        kind = body.get("type")
        if kind not in CONSENT_TYPES:
            raise ApiError(400, f"type must be opt-in or opt-out, not {kind!r}")
        section = body.get("section_discriminator")
        consent_list = body.get("consent_list_discriminator")
        topic = body.get("topic_discriminator")
        for name, value in (("section", section), ("consent_list", consent_list), ("topic", topic)):
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"{name}_discriminator must be a string")
        if topic is not None or consent_list is not None:
            if section is None or consent_list is None or topic is None:
                raise ApiError(400, "a topic consent needs section, consent list and topic discriminators")
            level = "topic"
        elif section is not None:
            level = "section"
        else:
            level = "account"
        if kind == "opt-in" and level != "topic":
            raise ApiError(400, "opt-in is only supported on a topic")
        if section is not None:
            index = self.sections.get(section)
            if index is None:
                raise ApiError(404, f"section {section} does not exist")
            if consent_list is not None:
                topics = index.topics.get(consent_list)
                if topics is None:
                    raise ApiError(400, f"consent list {consent_list} does not exist in section {section}")
                definition = topics.get(topic or "")
                if definition is None:
                    raise ApiError(400, f"topic {topic} does not exist on consent list {consent_list}")
                if definition.channel is not None and definition.channel != channel:
                    raise ApiError(400, f"topic {topic} is specific to channel {definition.channel}")
        now = self.clock()
        records = self.address_consents.setdefault((channel, address), {})
        record_key: ConsentKey = (section, consent_list, topic)
        record = records.get(record_key)
        if record is not None and record.type == kind:
            return False
        if record is None:
            record = records[record_key] = ConsentRecord(level, section, consent_list, topic, kind, now)
        record.type = kind
        record.updated_at = now
        if kind == "opt-in":
            record.opt_in_at = now
        else:
            record.opt_out_at = now
        summary = {"type": kind, "section": section, "consent_list": consent_list, "topic": topic}
        self._log("consent", (channel, address), summary, now)
        return True

    def evaluations(
        self, channel: str, address: str, section: str, consent_list: str
    ) -> list[dict[str, Any]]:
        """Topics of the list whose latest topic consent is an opt-in with no later opt-out above it."""
        self.check_address(channel, address)
        index = self.sections.get(section)
        if index is None:
            raise ApiError(404, f"section {section} does not exist")
        topics = index.topics.get(consent_list)
        if topics is None:
            raise ApiError(404, f"consent list {consent_list} does not exist in section {section}")
        records = self.address_consents.get((channel, address))
        if not records:
            return []
        # An opt-out on the whole account or section overrides topic opt-ins given before it.
        blocked_after: float | None = None
        for above in (records.get((None, None, None)), records.get((section, None, None))):
            if above is not None and above.type == "opt-out" and above.opt_out_at is not None:
                blocked_after = max(blocked_after or 0.0, above.opt_out_at)
        items = []
        for topic in topics:
            record = records.get((section, consent_list, topic))
            if record is None or record.type != "opt-in":
                continue
            if blocked_after is not None and blocked_after >= (record.opt_in_at or 0.0):
                continue
            items.append(
                {
                    "channel_discriminator": channel,
                    "address": address,
                    "section_discriminator": section,
                    "consent_list_discriminator": consent_list,
                    "topic_discriminator": topic,
                    "type": "opt-in",
                    "consented_at": iso(record.opt_in_at or record.updated_at),
                }
            )
        return items

    # ---- what happened -------------------------------------------------------------------

    def _log(self, kind: str, params: tuple[str, ...], summary: dict[str, Any], now: float) -> None:
        self._write_seq += 1
        self._writes.append((self._write_seq, kind, params, orjson.dumps(summary), now))

    def count_request(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    # ---- inspection ----------------------------------------------------------------------

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

    def consents(self, channel: str, address: str) -> list[ConsentRecord]:
        """Every consent record of the address (latest per level), oldest change first."""
        records = self.address_consents.get((channel_discriminator(channel), address), {})
        return sorted(
            (dataclasses.replace(r) for r in records.values()),
            key=lambda r: r.updated_at,
        )

    def opted_in_topics(self, channel: str, address: str, section: str, consent_list: str) -> list[str]:
        """Topic discriminators the evaluations endpoint would answer with."""
        items = self.evaluations(channel_discriminator(channel), address, section, consent_list)
        return [item["topic_discriminator"] for item in items]

    def request_count(
        self, method: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests seen, filtered by method, route template (e.g. `/oauth/token`) and status."""
        return sum(
            n
            for (m, r, s), n in self.requests.items()
            if (method is None or m == method)
            and (route is None or r == route)
            and (status is None or s == status)
        )

    @property
    def writes(self) -> list[WriteRecord]:
        """The write log, oldest first (the last `max_write_log` writes)."""
        return [_record(w) for w in self._writes]

    def writes_after(self, seq: int, limit: int | None = None) -> list[WriteRecord]:
        """Writes with a sequence number above `seq` (for polling), oldest first, at most `limit`."""
        log = self._writes
        if not log:
            return []
        # Sequence numbers are consecutive, so the position of `seq + 1` is known.
        start = max(0, seq + 1 - log[0][0])
        stop = len(log) if limit is None else min(len(log), start + limit)
        if start >= stop:
            return []
        if start > len(log) // 2:  # near the end: walk from there
            tail = [log[-i] for i in range(1, len(log) - start + 1)]
            tail.reverse()
            return [_record(w) for w in tail[: stop - start]]
        return [_record(w) for w in itertools.islice(log, start, stop)]

    def writes_of(self, kind: str | None = None) -> list[WriteRecord]:
        return [_record(w) for w in self._writes if kind is None or w[1] == kind]

    def reset_state(self) -> None:
        """Forget profiles, consents, tokens, counters and the write log; keep definitions and config."""
        self.tokens.clear()
        self.profiles.clear()
        self.attributes.clear()
        self.events.clear()
        self.address_consents.clear()
        self.requests.clear()
        self.rate_limited.clear()
        self.faults_injected.clear()
        self._writes.clear()
        self._write_seq = 0
        for limiter in (self.account_limiter, self.profile_limiter, self.token_limiter):
            limiter.reset()

    def summary(self) -> dict[str, Any]:
        return {
            "profiles": len(self.profiles),
            "addresses_with_consents": len(self.address_consents),
            "writes": self._write_seq,
            "requests": sum(self.requests.values()),
            "rate_limited": dict(self.rate_limited),
            "faults_injected": dict(self.faults_injected),
            "limits": self.limits_json(),
        }


_PARAM_NAMES = {
    "attributes": ("keyspace", "profile_key", "section"),
    "events": ("keyspace", "profile_key", "section"),
    "delete": ("keyspace", "profile_key"),
    "consent": ("channel", "address"),
}


def _record(w: tuple[int, str, tuple[str, ...], bytes, float]) -> WriteRecord:
    seq, kind, params, summary, at = w
    return WriteRecord(
        seq, kind, dict(zip(_PARAM_NAMES[kind], params, strict=True)), orjson.loads(summary), at
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---- the default account: exactly what mappings/demo.toml references, and a little more ----

KEYSPACE = "com.apsis1.integrations.keyspaces.sandbox.shopify"
SECTION = "com.apsis1.sections.sandbox"
VIP_SECTION = "com.apsis1.sections.sandbox-vip"
OTHER_SECTION = "com.apsis1.sections.sandbox-other"
DEPRECATED_AT = "2024-03-01T00:00:00Z"


def _attr(name: str, *versions: str | tuple[str, str], type_: str = "string") -> Attribute:
    """Versions: "1001" (current) or ("901", deprecated_at)."""
    return Attribute(
        discriminator=f"com.apsis1.attributes.{name}",
        name=name.replace("-", " ").title(),
        type=type_,
        versions=[Version(v) if isinstance(v, str) else Version(v[0], v[1]) for v in versions],
    )


def _event(name: str, *versions: str | tuple[str, str]) -> Event:
    return Event(
        discriminator=f"com.apsis1.integrations.events.{name}",
        name=name.replace("-", " ").title(),
        versions=[Version(v) if isinstance(v, str) else Version(v[0], v[1]) for v in versions],
    )


def default_definitions() -> Definitions:
    """mappings/demo.toml's keyspace, sections, versions, consent lists and topics, plus extras:
    deprecated versions next to the current ones (901, 902, 1901, 2901, 3901), an extra
    attribute (1011), an extra event (2003), an extra topic, an extra keyspace and section.
    """
    email_topics = [
        Topic("com.apsis1.topics.news", "News", EMAIL_CHANNEL),
        Topic("com.apsis1.topics.offers", "Offers", EMAIL_CHANNEL),
        Topic("com.apsis1.topics.events", "Events", EMAIL_CHANNEL),
    ]
    main = Section(
        discriminator=SECTION,
        name="Sandbox",
        attributes=[
            _attr("email", ("901", DEPRECATED_AT), "1001"),
            _attr("firstname", ("902", DEPRECATED_AT), "1002"),
            _attr("lastname", "1003"),
            _attr("mobile", "1004"),
            _attr("city", "1005"),
            _attr("country-code", "1006"),
            _attr("shopify-tags", "1007"),
            _attr("orders-count", "1008", type_="integer"),
            _attr("total-spent", "1009", type_="double"),
            _attr("customer-since", "1010", type_="date"),
            _attr("birthday", "1011", type_="date"),
        ],
        consent_lists=[
            ConsentList("com.apsis1.consent-lists.newsletter", "Newsletter", email_topics),
            ConsentList(
                "com.apsis1.consent-lists.sms",
                "SMS",
                [Topic("com.apsis1.topics.sms-offers", "SMS offers", SMS_CHANNEL)],
            ),
        ],
        events=[
            _event("order", ("1901", DEPRECATED_AT), "2001"),
            _event("order-line", "2002"),
            _event("cart-abandoned", "2003"),
        ],
    )
    vip = Section(
        discriminator=VIP_SECTION,
        name="Sandbox VIP",
        attributes=[
            _attr("email", ("2901", DEPRECATED_AT), "3001"),
            _attr("firstname", "3002"),
            _attr("total-spent", "3003", type_="double"),
        ],
        consent_lists=[
            ConsentList(
                "com.apsis1.consent-lists.vip",
                "VIP",
                [Topic("com.apsis1.topics.vip-news", "VIP news", EMAIL_CHANNEL)],
            )
        ],
        events=[_event("order", ("3901", DEPRECATED_AT), "4001"), _event("order-line", "4002")],
    )
    other = Section(
        discriminator=OTHER_SECTION,
        name="Another section",
        attributes=[_attr("email", "5001")],
        consent_lists=[
            ConsentList("com.apsis1.consent-lists.other", "Other", [Topic("com.apsis1.topics.other")])
        ],
        events=[_event("order", "6001")],
    )
    return Definitions(
        keyspaces=[
            Keyspace(KEYSPACE, "Shopify customer id (sandbox)"),
            Keyspace("com.apsis1.keyspaces.email", "Email"),
        ],
        sections=[main, vip, other],
    )


def default_account(**options: Any) -> Account:
    """The account `shopsync sandbox` serves: mappings/demo.toml's definitions and credentials.

    Keyword options go to `Account` (limits, token lifetime, clock, ...).
    """
    return Account(default_definitions(), **options)


def definitions_of(sections: Iterable[Section], keyspaces: Iterable[str] = (KEYSPACE,)) -> Definitions:
    """Shorthand for tests building their own account."""
    return Definitions(keyspaces=[Keyspace(k) for k in keyspaces], sections=list(sections))
