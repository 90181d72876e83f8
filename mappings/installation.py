"""The installations file: schema, validation and `${NAME}` interpolation, as pure functions.

`parse_installations(document, env, source)` turns the parsed TOML document into immutable,
typed objects or raises `InstallationError` with one line naming the file, the key and the
reason. Reading the file and the environment is the caller's job (see `core.config`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

CONDITION_OPERATORS = frozenset(
    {"eq", "ne", "in", "not_in", "contains", "not_contains", "exists", "gt", "gte", "lt", "lte"}
)
CHANNELS: Mapping[str, str] = MappingProxyType(
    {"email": "com.apsis1.channels.email", "sms": "com.apsis1.channels.sms"}
)
ORDER_EVENT_TOPICS = ("orders/paid", "orders/create")
MIN_API_VERSION = "2020-07"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_API_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")
_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")


class InstallationError(ValueError):
    """A mistake in the installations file; `str()` is one line: file: key: reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class ConsentMapping:
    channel: Literal["email", "sms"]
    consent_list: str
    topics: tuple[str, ...]

    @property
    def channel_discriminator(self) -> str:
        return CHANNELS[self.channel]


@dataclass(frozen=True, slots=True)
class EventMapping:
    order: str | None = None
    order_line: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    discriminator: str
    conditions: tuple[Condition, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    email: ConsentMapping | None = None
    sms: ConsentMapping | None = None
    events: EventMapping = field(default_factory=EventMapping)

    @property
    def consents(self) -> tuple[ConsentMapping, ...]:
        return tuple(c for c in (self.email, self.sms) if c is not None)


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate and concurrency limits; the defaults are the documented limits with a margin."""

    shopify_bucket_size: int = 40
    shopify_leak_per_s: float = 2.0
    shopify_concurrency: int = 8
    apsis_requests_per_s: float = 100.0
    apsis_profile_requests_per_s: float = 10.0
    apsis_concurrency: int = 32
    safety: float = 0.95  # share of each documented limit we allow ourselves


@dataclass(frozen=True, slots=True)
class ApsisAccount:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    keyspace: str


@dataclass(frozen=True, slots=True)
class OrderSettings:
    event_topic: Literal["orders/paid", "orders/create"] = "orders/paid"
    guests: Literal["skip", "email"] = "skip"


@dataclass(frozen=True, slots=True)
class SyncSettings:
    reconcile_interval_s: int = 3600
    bulk_export: bool = False


@dataclass(frozen=True, slots=True)
class Shop:
    domain: str
    admin_url: str
    api_version: str
    access_token: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    apsis: ApsisAccount
    sections: tuple[Section, ...]
    limits: Limits = field(default_factory=Limits)
    orders: OrderSettings = field(default_factory=OrderSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)


@dataclass(frozen=True, slots=True)
class Installations:
    source: str
    shops: Mapping[str, Shop]

    def get(self, domain: str) -> Shop | None:
        return self.shops.get(domain.strip().lower())


# --- parsing -------------------------------------------------------------------------------


class _Ctx:
    """Carries the source name and environment through the parse so errors can name both."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source, self.env = source, env

    def fail(self, key: str, reason: str) -> InstallationError:
        return InstallationError(self.source, key, reason)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a table, not {_type_name(value)}")
        return value

    def only(self, table: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                raise self.fail(_join(key, name), f"unknown key (allowed: {', '.join(allowed)})")

    def string(self, table: Mapping[str, Any], key: str, name: str, default: str | None = None) -> str:
        full = _join(key, name)
        if name not in table:
            if default is not None:
                return default
            raise self.fail(full, "missing required key")
        value = table[name]
        if not isinstance(value, str):
            raise self.fail(full, f"must be a string, not {_type_name(value)}")
        value = self.interpolate(value, full)
        if not value.strip():
            raise self.fail(full, "must not be empty")
        return value

    def number(
        self, table: Mapping[str, Any], key: str, name: str, default: float, minimum: float = 0
    ) -> float:
        full = _join(key, name)
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(full, f"must be a number, not {_type_name(value)}")
        if value <= minimum:
            raise self.fail(full, f"must be greater than {minimum:g}")
        return float(value)

    def boolean(self, table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(_join(key, name), f"must be true or false, not {_type_name(value)}")
        return value

    def choice(self, table: Mapping[str, Any], key: str, name: str, options: Sequence[str]) -> str:
        value = self.string(table, key, name, default=options[0])
        if value not in options:
            raise self.fail(_join(key, name), f"must be one of {', '.join(options)}, not {value!r}")
        return value

    def interpolate(self, value: str, key: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                raise self.fail(key, f"environment variable {name} is not set")
            return self.env[name]

        return _ENV_REF.sub(replace, value)


def parse_installations_toml(
    text: str, env: Mapping[str, str], source: str = "<installations>"
) -> Installations:
    """Parse the installations file's TOML text (the caller reads the file)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InstallationError(source, "(syntax)", str(exc)) from None
    return parse_installations(document, env, source)


def parse_installations(
    document: Mapping[str, Any], env: Mapping[str, str], source: str = "<installations>"
) -> Installations:
    ctx = _Ctx(source, env)
    ctx.only(document, "", ["shop"])
    raw_shops = document.get("shop")
    if not isinstance(raw_shops, list) or not raw_shops:
        raise ctx.fail("shop", "at least one [[shop]] table is required")
    shops: dict[str, Shop] = {}
    for index, raw in enumerate(raw_shops):
        shop = _parse_shop(ctx, ctx.table(raw, f"shop[{index}]"), f"shop[{index}]")
        if shop.domain in shops:
            raise ctx.fail(f"shop[{index}].domain", f"duplicate shop domain {shop.domain!r}")
        shops[shop.domain] = shop
    return Installations(source=source, shops=MappingProxyType(shops))


_SHOP_KEYS = (
    "domain",
    "admin_url",
    "api_version",
    "access_token",
    "webhook_secret",
    "apsis",
    "section",
    "limits",
    "orders",
    "sync",
)


def _parse_shop(ctx: _Ctx, raw: Mapping[str, Any], key: str) -> Shop:
    ctx.only(raw, key, _SHOP_KEYS)
    domain = ctx.string(raw, key, "domain").strip().lower()
    if not _DOMAIN.match(domain):
        raise ctx.fail(_join(key, "domain"), f"not a shop domain: {domain!r}")
    admin_url = _url(
        ctx, ctx.string(raw, key, "admin_url", default=f"https://{domain}"), _join(key, "admin_url")
    )
    api_version = ctx.string(raw, key, "api_version")
    if not _API_VERSION.match(api_version) or api_version < MIN_API_VERSION:
        raise ctx.fail(
            _join(key, "api_version"),
            f"must be a Shopify API version from {MIN_API_VERSION} on, like 2024-10",
        )
    sections_raw = raw.get("section")
    if not isinstance(sections_raw, list) or not sections_raw:
        raise ctx.fail(_join(key, "section"), "at least one [[shop.section]] table is required")
    sections = tuple(
        _parse_section(ctx, ctx.table(s, f"{key}.section[{i}]"), f"{key}.section[{i}]")
        for i, s in enumerate(sections_raw)
    )
    seen: set[str] = set()
    for i, section in enumerate(sections):
        if section.discriminator in seen:
            raise ctx.fail(
                f"{key}.section[{i}].discriminator", f"duplicate section {section.discriminator!r}"
            )
        seen.add(section.discriminator)
    if "apsis" not in raw:
        raise ctx.fail(_join(key, "apsis"), "missing required table [shop.apsis]")
    return Shop(
        domain=domain,
        admin_url=admin_url,
        api_version=api_version,
        access_token=ctx.string(raw, key, "access_token"),
        webhook_secret=ctx.string(raw, key, "webhook_secret"),
        apsis=_parse_apsis(ctx, ctx.table(raw["apsis"], _join(key, "apsis")), _join(key, "apsis")),
        sections=sections,
        limits=_parse_limits(ctx, raw.get("limits", {}), _join(key, "limits")),
        orders=_parse_orders(ctx, raw.get("orders", {}), _join(key, "orders")),
        sync=_parse_sync(ctx, raw.get("sync", {}), _join(key, "sync")),
    )


def _parse_apsis(ctx: _Ctx, raw: Mapping[str, Any], key: str) -> ApsisAccount:
    ctx.only(raw, key, ("base_url", "client_id", "client_secret", "keyspace"))
    return ApsisAccount(
        base_url=_url(
            ctx, ctx.string(raw, key, "base_url", default="https://api.apsis.one"), _join(key, "base_url")
        ),
        client_id=ctx.string(raw, key, "client_id"),
        client_secret=ctx.string(raw, key, "client_secret"),
        keyspace=ctx.string(raw, key, "keyspace"),
    )


def _parse_section(ctx: _Ctx, raw: Mapping[str, Any], key: str) -> Section:
    ctx.only(raw, key, ("discriminator", "conditions", "attributes", "consents", "events"))
    conditions_raw = raw.get("conditions", [])
    if not isinstance(conditions_raw, list):
        raise ctx.fail(
            _join(key, "conditions"), f"must be a list of tables, not {_type_name(conditions_raw)}"
        )
    conditions = tuple(
        _parse_condition(ctx, ctx.table(c, f"{key}.conditions[{i}]"), f"{key}.conditions[{i}]")
        for i, c in enumerate(conditions_raw)
    )
    attributes_raw = ctx.table(raw.get("attributes", {}), _join(key, "attributes"))
    attributes: dict[str, str] = {}
    for path in attributes_raw:
        if not _is_field_path(path):
            raise ctx.fail(_join(key, f"attributes.{path!r}"), "not a dotted Shopify field path")
        attributes[path] = ctx.string(attributes_raw, _join(key, "attributes"), path)
    consents_raw = ctx.table(raw.get("consents", {}), _join(key, "consents"))
    ctx.only(consents_raw, _join(key, "consents"), ("email", "sms"))
    email = sms = None
    if "email" in consents_raw:
        email = _parse_consent(ctx, consents_raw["email"], _join(key, "consents.email"), "email")
    if "sms" in consents_raw:
        sms = _parse_consent(ctx, consents_raw["sms"], _join(key, "consents.sms"), "sms")
    events_raw = ctx.table(raw.get("events", {}), _join(key, "events"))
    ctx.only(events_raw, _join(key, "events"), ("order", "order_line"))
    events = EventMapping(
        order=ctx.string(events_raw, _join(key, "events"), "order") if "order" in events_raw else None,
        order_line=(
            ctx.string(events_raw, _join(key, "events"), "order_line") if "order_line" in events_raw else None
        ),
    )
    return Section(
        discriminator=ctx.string(raw, key, "discriminator"),
        conditions=conditions,
        attributes=MappingProxyType(attributes),
        email=email,
        sms=sms,
        events=events,
    )


def _parse_condition(ctx: _Ctx, raw: Mapping[str, Any], key: str) -> Condition:
    ctx.only(raw, key, ("field", "op", "value"))
    path = ctx.string(raw, key, "field")
    if not _is_field_path(path):
        raise ctx.fail(_join(key, "field"), f"not a dotted Shopify field path: {path!r}")
    op = ctx.string(raw, key, "op")
    if op not in CONDITION_OPERATORS:
        raise ctx.fail(
            _join(key, "op"),
            f"unknown condition operator {op!r} (known: {', '.join(sorted(CONDITION_OPERATORS))})",
        )
    value_key = _join(key, "value")
    if op == "exists":
        value = raw.get("value", True)
        if not isinstance(value, bool):
            raise ctx.fail(value_key, "must be true or false for op 'exists'")
        return Condition(path, op, value)
    if "value" not in raw:
        raise ctx.fail(value_key, f"missing required key for op {op!r}")
    value = raw["value"]
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ctx.fail(value_key, f"must be a non-empty list for op {op!r}")
        if not all(isinstance(v, str | int | float | bool) for v in value):
            raise ctx.fail(value_key, "list items must be strings, numbers or booleans")
        return Condition(
            path, op, tuple(ctx.interpolate(v, value_key) if isinstance(v, str) else v for v in value)
        )
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ctx.fail(value_key, f"must be a number or an ISO date for op {op!r}")
    elif not isinstance(value, str | int | float | bool):
        raise ctx.fail(value_key, f"must be a string, number or boolean for op {op!r}")
    if isinstance(value, str):
        value = ctx.interpolate(value, value_key)
    return Condition(path, op, value)


def _parse_consent(ctx: _Ctx, raw: Any, key: str, channel: Literal["email", "sms"]) -> ConsentMapping:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("consent_list", "topics"))
    topics = table.get("topics")
    if not isinstance(topics, list) or not topics:
        raise ctx.fail(_join(key, "topics"), "must be a non-empty list of topic discriminators")
    if not all(isinstance(t, str) and t.strip() for t in topics):
        raise ctx.fail(_join(key, "topics"), "every topic must be a non-empty string")
    if len(set(topics)) != len(topics):
        raise ctx.fail(_join(key, "topics"), "lists a topic twice")
    return ConsentMapping(
        channel=channel, consent_list=ctx.string(table, key, "consent_list"), topics=tuple(topics)
    )


def _parse_limits(ctx: _Ctx, raw: Any, key: str) -> Limits:
    table = ctx.table(raw, key)
    d = Limits()
    ctx.only(table, key, tuple(Limits.__dataclass_fields__))
    safety = ctx.number(table, key, "safety", d.safety)
    if safety > 1:
        raise ctx.fail(_join(key, "safety"), "must be at most 1")
    return Limits(
        shopify_bucket_size=int(ctx.number(table, key, "shopify_bucket_size", d.shopify_bucket_size)),
        shopify_leak_per_s=ctx.number(table, key, "shopify_leak_per_s", d.shopify_leak_per_s),
        shopify_concurrency=int(ctx.number(table, key, "shopify_concurrency", d.shopify_concurrency)),
        apsis_requests_per_s=ctx.number(table, key, "apsis_requests_per_s", d.apsis_requests_per_s),
        apsis_profile_requests_per_s=ctx.number(
            table, key, "apsis_profile_requests_per_s", d.apsis_profile_requests_per_s
        ),
        apsis_concurrency=int(ctx.number(table, key, "apsis_concurrency", d.apsis_concurrency)),
        safety=safety,
    )


def _parse_orders(ctx: _Ctx, raw: Any, key: str) -> OrderSettings:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("event_topic", "guests"))
    topic = ctx.choice(table, key, "event_topic", ORDER_EVENT_TOPICS)
    guests = ctx.choice(table, key, "guests", ("skip", "email"))
    return OrderSettings(event_topic=topic, guests=guests)  # type: ignore[arg-type]


def _parse_sync(ctx: _Ctx, raw: Any, key: str) -> SyncSettings:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("reconcile_interval", "bulk_export"))
    return SyncSettings(
        reconcile_interval_s=int(ctx.number(table, key, "reconcile_interval", 3600, minimum=59)),
        bulk_export=ctx.boolean(table, key, "bulk_export", False),
    )


def _url(ctx: _Ctx, value: str, key: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ctx.fail(key, f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def _is_field_path(path: str) -> bool:
    return bool(path) and all(part and part.replace("_", "a").isalnum() for part in path.split("."))


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
