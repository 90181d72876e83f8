"""Parsing the installations file: the TOML document -> `Installations`, checked section by section.

`parse_installations(document, env, source)` turns the parsed TOML document into the immutable,
typed objects of `mappings.installation` or raises `InstallationError` with one line naming the
file, the key and the reason; `parse_installations_toml` parses the text first. One function per
table of the file (shop, apsis, section, condition, consent, limits, orders, sync), all pure:
reading the file and the environment is the caller's job (see `core.config`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from mappings.installation import (
    AUTH_MODES,
    CONDITION_OPERATORS,
    DEFAULT_GRAPHQL_VERSION,
    DEFAULT_IMPORT_THRESHOLD,
    DEFAULT_SCOPES,
    MIN_API_VERSION,
    ORDER_EVENT_TOPICS,
    ApsisAccount,
    Condition,
    ConsentMapping,
    EventMapping,
    InstallationError,
    Installations,
    Limits,
    OrderSettings,
    Section,
    Shop,
    ShopAuth,
    SyncSettings,
)
from mappings.installation_checks import ParseContext, join_key, type_name

_API_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")
_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")


def parse_installations_toml(
    text: str, env: Mapping[str, str], source: str = "<installations>"
) -> Installations:
    """Parse the installations file's TOML text (the caller reads the file)."""
    return parse_installations(load_document(text, source), env, source)


def load_document(text: str, source: str) -> dict[str, Any]:
    """The file's TOML as a document; a syntax error as the one-line `InstallationError`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InstallationError(source, "(syntax)", str(exc)) from None


def parse_installations(
    document: Mapping[str, Any], env: Mapping[str, str], source: str = "<installations>"
) -> Installations:
    ctx = ParseContext(source, env)
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
    return Installations(source=source, shops=MappingProxyType(shops), warnings=tuple(ctx.warnings))


def domain_of(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> str:
    domain = ctx.string(raw, key, "domain").strip().lower()
    if not _DOMAIN.match(domain):
        raise ctx.fail(join_key(key, "domain"), f"not a shop domain: {domain!r}")
    return domain


def api_version_of(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> str:
    api_version = ctx.string(raw, key, "api_version")
    if not _API_VERSION.match(api_version) or api_version < MIN_API_VERSION:
        raise ctx.fail(
            join_key(key, "api_version"),
            f"must be a Shopify API version from {MIN_API_VERSION} on, like 2024-10",
        )
    return api_version


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
    "auth",
    "graphql_api_version",
)


def _parse_shop(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> Shop:
    ctx.only(raw, key, _SHOP_KEYS)
    domain = domain_of(ctx, raw, key)
    admin_url = _url(
        ctx, ctx.string(raw, key, "admin_url", default=f"https://{domain}"), join_key(key, "admin_url")
    )
    api_version = api_version_of(ctx, raw, key)
    sections_raw = raw.get("section")
    if not isinstance(sections_raw, list) or not sections_raw:
        raise ctx.fail(join_key(key, "section"), "at least one [[shop.section]] table is required")
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
        raise ctx.fail(join_key(key, "apsis"), "missing required table [shop.apsis]")
    auth = parse_auth(ctx, raw.get("auth", {}), join_key(key, "auth"))
    if auth.mode == "static":
        access_token = ctx.string(raw, key, "access_token")
        webhook_secret = ctx.string(raw, key, "webhook_secret")
    else:
        if "access_token" in raw:
            raise ctx.fail(join_key(key, "access_token"), f"not used with auth mode {auth.mode!r}: remove it")
        access_token = ""
        # Dev Dashboard apps sign their webhooks with the app's client secret.
        webhook_secret = ctx.string(raw, key, "webhook_secret", default=auth.client_secret)
    graphql_version = ctx.string(raw, key, "graphql_api_version", default=DEFAULT_GRAPHQL_VERSION)
    if not _API_VERSION.match(graphql_version):
        raise ctx.fail(join_key(key, "graphql_api_version"), "must be a Shopify API version like 2026-10")
    return Shop(
        domain=domain,
        admin_url=admin_url,
        api_version=api_version,
        access_token=access_token,
        webhook_secret=webhook_secret,
        auth=auth,
        graphql_api_version=graphql_version,
        apsis=_parse_apsis(ctx, ctx.table(raw["apsis"], join_key(key, "apsis")), join_key(key, "apsis")),
        sections=sections,
        limits=_parse_limits(ctx, raw.get("limits", {}), join_key(key, "limits")),
        orders=_parse_orders(ctx, raw.get("orders", {}), join_key(key, "orders")),
        sync=_parse_sync(ctx, raw.get("sync", {}), join_key(key, "sync")),
    )


def parse_auth(ctx: ParseContext, raw: Any, key: str) -> ShopAuth:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("mode", "client_id", "client_secret", "scopes"))
    mode = ctx.string(table, key, "mode", default="static")
    if mode not in AUTH_MODES:
        raise ctx.fail(join_key(key, "mode"), f"must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
    scopes = table.get("scopes", list(DEFAULT_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s.strip() for s in scopes):
        raise ctx.fail(join_key(key, "scopes"), "must be a list of Shopify access scopes")
    if mode == "static":
        return ShopAuth(scopes=tuple(scopes))
    return ShopAuth(
        mode=mode,  # type: ignore[arg-type]
        client_id=ctx.string(table, key, "client_id"),
        client_secret=ctx.string(table, key, "client_secret"),
        scopes=tuple(scopes),
    )


def _parse_apsis(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> ApsisAccount:
    ctx.only(raw, key, ("base_url", "client_id", "client_secret", "keyspace"))
    return ApsisAccount(
        base_url=_url(
            ctx, ctx.string(raw, key, "base_url", default="https://api.apsis.one"), join_key(key, "base_url")
        ),
        client_id=ctx.string(raw, key, "client_id"),
        client_secret=ctx.string(raw, key, "client_secret"),
        keyspace=ctx.string(raw, key, "keyspace"),
    )


def _parse_section(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> Section:
    ctx.only(raw, key, ("discriminator", "conditions", "attributes", "consents", "events"))
    conditions_raw = raw.get("conditions", [])
    if not isinstance(conditions_raw, list):
        raise ctx.fail(
            join_key(key, "conditions"), f"must be a list of tables, not {type_name(conditions_raw)}"
        )
    conditions = tuple(
        _parse_condition(ctx, ctx.table(c, f"{key}.conditions[{i}]"), f"{key}.conditions[{i}]")
        for i, c in enumerate(conditions_raw)
    )
    attributes_raw = ctx.table(raw.get("attributes", {}), join_key(key, "attributes"))
    attributes: dict[str, str] = {}
    for path in attributes_raw:
        if not _is_field_path(path):
            raise ctx.fail(join_key(key, f"attributes.{path!r}"), "not a dotted Shopify field path")
        attributes[path] = ctx.string(attributes_raw, join_key(key, "attributes"), path)
    consents_raw = ctx.table(raw.get("consents", {}), join_key(key, "consents"))
    ctx.only(consents_raw, join_key(key, "consents"), ("email", "sms"))
    email = sms = None
    if "email" in consents_raw:
        email = _parse_consent(ctx, consents_raw["email"], join_key(key, "consents.email"), "email")
    if "sms" in consents_raw:
        sms = _parse_consent(ctx, consents_raw["sms"], join_key(key, "consents.sms"), "sms")
    events_raw = ctx.table(raw.get("events", {}), join_key(key, "events"))
    ctx.only(events_raw, join_key(key, "events"), ("order", "order_line"))
    events = EventMapping(
        order=ctx.string(events_raw, join_key(key, "events"), "order") if "order" in events_raw else None,
        order_line=(
            ctx.string(events_raw, join_key(key, "events"), "order_line")
            if "order_line" in events_raw
            else None
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


def _parse_condition(ctx: ParseContext, raw: Mapping[str, Any], key: str) -> Condition:
    ctx.only(raw, key, ("field", "op", "value"))
    path = ctx.string(raw, key, "field")
    if not _is_field_path(path):
        raise ctx.fail(join_key(key, "field"), f"not a dotted Shopify field path: {path!r}")
    op = ctx.string(raw, key, "op")
    if op not in CONDITION_OPERATORS:
        raise ctx.fail(
            join_key(key, "op"),
            f"unknown condition operator {op!r} (known: {', '.join(sorted(CONDITION_OPERATORS))})",
        )
    value_key = join_key(key, "value")
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


def _parse_consent(ctx: ParseContext, raw: Any, key: str, channel: Literal["email", "sms"]) -> ConsentMapping:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("consent_list", "topics"))
    topics = table.get("topics")
    if not isinstance(topics, list) or not topics:
        raise ctx.fail(join_key(key, "topics"), "must be a non-empty list of topic discriminators")
    if not all(isinstance(t, str) and t.strip() for t in topics):
        raise ctx.fail(join_key(key, "topics"), "every topic must be a non-empty string")
    if len(set(topics)) != len(topics):
        raise ctx.fail(join_key(key, "topics"), "lists a topic twice")
    consent_list = None
    if "consent_list" in table:
        consent_list = ctx.string(table, key, "consent_list")
        ctx.warn(
            join_key(key, "consent_list"),
            "ignored: APSIS Consent 2.0 gives consent per profile and topic, consent lists are not part of the API",
        )
    return ConsentMapping(channel=channel, topics=tuple(topics), consent_list=consent_list)


def _parse_limits(ctx: ParseContext, raw: Any, key: str) -> Limits:
    table = ctx.table(raw, key)
    d = Limits()
    ctx.only(table, key, tuple(Limits.__dataclass_fields__))
    safety = ctx.number(table, key, "safety", d.safety)
    if safety > 1:
        raise ctx.fail(join_key(key, "safety"), "must be at most 1")
    return Limits(
        shopify_bucket_size=int(ctx.number(table, key, "shopify_bucket_size", d.shopify_bucket_size)),
        shopify_leak_per_s=ctx.number(table, key, "shopify_leak_per_s", d.shopify_leak_per_s),
        shopify_concurrency=int(ctx.number(table, key, "shopify_concurrency", d.shopify_concurrency)),
        apsis_requests_per_s=ctx.number(table, key, "apsis_requests_per_s", d.apsis_requests_per_s),
        apsis_profile_requests_per_s=ctx.number(
            table, key, "apsis_profile_requests_per_s", d.apsis_profile_requests_per_s
        ),
        apsis_profile_burst=_whole(ctx, table, key, "apsis_profile_burst", d.apsis_profile_burst),
        apsis_concurrency=int(ctx.number(table, key, "apsis_concurrency", d.apsis_concurrency)),
        safety=safety,
    )


def _whole(ctx: ParseContext, table: Mapping[str, Any], key: str, name: str, default: int) -> int:
    value = ctx.number(table, key, name, default)
    if value != int(value):
        raise ctx.fail(join_key(key, name), f"must be a whole number, not {value:g}")
    return int(value)


def _parse_orders(ctx: ParseContext, raw: Any, key: str) -> OrderSettings:
    table = ctx.table(raw, key)
    ctx.only(table, key, ("event_topic", "guests"))
    topic = ctx.choice(table, key, "event_topic", ORDER_EVENT_TOPICS)
    guests = ctx.choice(table, key, "guests", ("skip", "email"))
    return OrderSettings(event_topic=topic, guests=guests)  # type: ignore[arg-type]


def _parse_sync(ctx: ParseContext, raw: Any, key: str) -> SyncSettings:
    table = ctx.table(raw, key)
    ctx.only(
        table,
        key,
        ("reconcile_interval", "bulk_export", "import_threshold", "weight", "audit_interval", "audit_repair"),
    )
    weight = table.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
        raise ctx.fail(join_key(key, "weight"), f"must be a whole number from 1 to 100, not {weight!r}")
    threshold = table.get("import_threshold", DEFAULT_IMPORT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ctx.fail(
            join_key(key, "import_threshold"),
            f"must be a whole number of customers, 0 or more (0: never through imports), not {threshold!r}",
        )
    return SyncSettings(
        reconcile_interval_s=int(ctx.number(table, key, "reconcile_interval", 3600, minimum=59)),
        bulk_export=ctx.boolean(table, key, "bulk_export", False),
        import_threshold=threshold,
        weight=weight,
        audit_interval_s=_interval(ctx, table.get("audit_interval"), join_key(key, "audit_interval")),
        audit_repair=ctx.boolean(table, key, "audit_repair", False),
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MIN_AUDIT_INTERVAL_S = 600  # an audit reads the whole store: not more often than every 10 minutes


def _interval(ctx: ParseContext, value: Any, key: str) -> int | None:
    """`[shop.sync] audit_interval`: seconds (a whole number) or a duration such as "24h", "90m",
    "7d" (units s, m, h, d); absent: no scheduled audit."""
    if value is None:
        return None
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value[:-1].isdigit() and value[-1:] in _UNITS:
        seconds = int(value[:-1]) * _UNITS[value[-1]]
    elif isinstance(value, str) and value.isdigit():
        seconds = int(value)
    if seconds is None:
        raise ctx.fail(key, f'must be seconds or a duration such as "24h", "90m", "7d", not {value!r}')
    if seconds < MIN_AUDIT_INTERVAL_S:
        raise ctx.fail(key, f"must be at least {MIN_AUDIT_INTERVAL_S} seconds (10m), not {seconds}")
    return seconds


def _url(ctx: ParseContext, value: str, key: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ctx.fail(key, f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def _is_field_path(path: str) -> bool:
    return bool(path) and all(part and part.replace("_", "a").isalnum() for part in path.split("."))
