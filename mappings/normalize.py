"""Shopify customer payloads (REST webhooks 2020-07 .. newest, consent and tags topics) -> snapshots.

Decisions:
- A key absent from the payload is `UNKNOWN`; a key present with `null` is known and empty.
  No per-version tables: 2025-01 customer webhooks simply lack `tags`, `email_marketing_consent`
  and `sms_marketing_consent`, so those stay unknown; so does any other field a version drops.
- Email consent: `email_marketing_consent` (2022-04+) wins over legacy `accepts_marketing`.
  `accepts_marketing: true` -> `subscribed`; `false` -> `not_subscribed` (level from
  `marketing_opt_in_level`, time from `accepts_marketing_updated_at`). A legacy `false` that
  follows a `subscribed` is still an opt-out: the consent rule turns subscribed -> not_subscribed
  into an opt-out (see `mappings.consent`).
- Consent topics give partial snapshots: `customers_email_marketing_consent/update`
  `{customer_id, email_address, email_marketing_consent}` and `customers_marketing_consent/update`
  `{id, phone, sms_marketing_consent}`; their `updated_at` stays unknown.
- `customer.tags_added` / `customer.tags_removed` `{customerId (gid), tags: [...], occurredAt}`
  give a `TagsChange` (a delta); a comma-separated `tags` string is accepted too.
- Ids may be integers, numeric strings or `gid://shopify/Customer/<n>`. Naive times are UTC.
- A payload that cannot be a customer raises `PayloadError` naming the field.
- GraphQL bulk export lines are `mappings.normalize_graphql`; single values, `mappings.payload_values`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mappings.payload_values import (
    as_object,
    consent_state,
    opt_bool,
    opt_decimal,
    opt_email,
    opt_int,
    opt_str,
    parse_address,
    parse_addresses,
    parse_id,
    parse_tags,
    parse_time,
)
from mappings.snapshot import UNKNOWN, Consent, CustomerSnapshot, Known, PayloadError, TagsChange

CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update", "customers/enable", "customers/disable"})
EMAIL_CONSENT_TOPIC = "customers_email_marketing_consent/update"
SMS_CONSENT_TOPIC = "customers_marketing_consent/update"
TAGS_TOPICS = frozenset({"customer.tags_added", "customer.tags_removed"})

# REST keys that become typed snapshot fields (everything else lands in `raw`).
_REST_TYPED = frozenset(
    {
        "id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "tags",
        "state",
        "verified_email",
        "addresses",
        "default_address",
        "orders_count",
        "total_spent",
        "currency",
        "created_at",
        "updated_at",
        "email_marketing_consent",
        "sms_marketing_consent",
        "accepts_marketing",
        "accepts_marketing_updated_at",
        "marketing_opt_in_level",
    }
)


def normalize_topic(topic: str, payload: Any) -> CustomerSnapshot | TagsChange:
    """Dispatch on the webhook topic."""
    if topic in CUSTOMER_TOPICS:
        return normalize_customer(payload)
    if topic == EMAIL_CONSENT_TOPIC:
        return normalize_email_consent_update(payload)
    if topic == SMS_CONSENT_TOPIC:
        return normalize_sms_consent_update(payload)
    if topic in TAGS_TOPICS:
        return normalize_tags_change(topic, payload)
    raise PayloadError("topic", f"not a customer topic: {topic!r}")


def customer_id(payload: Any) -> int:
    """The customer id of any customer payload (also `customers/delete`, `customers/redact`)."""
    body = as_object(payload, "payload")
    for key in ("id", "customer_id", "customerId"):
        if key in body:
            return parse_id(body[key], key)
    if isinstance(body.get("customer"), Mapping):
        return customer_id(body["customer"])
    raise PayloadError("id", "missing customer id")


# --- REST customers/* (and the Admin API customer resource) ------------------------------------


def normalize_customer(payload: Any) -> CustomerSnapshot:
    body = as_object(payload, "payload")
    if "id" not in body and isinstance(body.get("customer"), Mapping):
        body = body["customer"]  # `GET customers/{id}.json` wraps the resource
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    values: dict[str, Any] = {"id": parse_id(body["id"], "id")}
    for key in ("first_name", "last_name", "currency"):
        if key in body:
            values[key] = opt_str(body[key], key)
    if "email" in body:
        values["email"] = opt_email(body["email"], "email")
    if "phone" in body:
        values["phone"] = opt_str(body["phone"], "phone")
    if "state" in body:
        state = opt_str(body["state"], "state")
        values["state"] = state.lower() if state else state
    if "verified_email" in body:
        values["verified_email"] = opt_bool(body["verified_email"], "verified_email")
    if "tags" in body:
        values["tags"] = parse_tags(body["tags"], "tags")
    if "addresses" in body:
        values["addresses"] = parse_addresses(body["addresses"], "addresses")
    if "default_address" in body:
        values["default_address"] = parse_address(body["default_address"], "default_address")
    elif "addresses" in body:
        # Shopify leaves `default_address` out (rather than null) when there is no address: with
        # the address list present, its absence is knowledge, not a trimmed payload.
        values["default_address"] = next(
            (a for a in values["addresses"] if isinstance(a, Mapping) and a.get("default")), None
        )
    if "orders_count" in body:
        values["orders_count"] = opt_int(body["orders_count"], "orders_count")
    if "total_spent" in body:
        values["total_spent"] = opt_decimal(body["total_spent"], "total_spent")
    for key in ("created_at", "updated_at"):
        if key in body:
            values[key] = parse_time(body[key], key)
    email_consent = _rest_email_consent(body)
    if email_consent is not UNKNOWN:
        values["email_marketing_consent"] = email_consent
    if "sms_marketing_consent" in body:
        values["sms_marketing_consent"] = _rest_consent(
            body["sms_marketing_consent"], "sms_marketing_consent"
        )
    raw = {k: v for k, v in body.items() if k not in _REST_TYPED}
    return CustomerSnapshot(**values, raw=raw)


def _rest_email_consent(body: Mapping[str, Any]) -> Known[Consent | None]:
    if "email_marketing_consent" in body:
        return _rest_consent(body["email_marketing_consent"], "email_marketing_consent")
    if "accepts_marketing" not in body:
        return UNKNOWN
    accepts = opt_bool(body["accepts_marketing"], "accepts_marketing")
    if accepts is None:
        return None
    level = opt_str(body.get("marketing_opt_in_level"), "marketing_opt_in_level")
    changed = parse_time(body.get("accepts_marketing_updated_at"), "accepts_marketing_updated_at")
    return Consent("subscribed" if accepts else "not_subscribed", level, changed)


def _rest_consent(value: Any, key: str) -> Consent | None:
    if value is None:
        return None
    obj = as_object(value, key)
    if "state" not in obj:
        raise PayloadError(f"{key}.state", "missing")
    return Consent(
        state=consent_state(obj["state"], f"{key}.state"),
        opt_in_level=opt_str(obj.get("opt_in_level"), f"{key}.opt_in_level"),
        updated_at=parse_time(obj.get("consent_updated_at"), f"{key}.consent_updated_at"),
    )


# --- topics with partial customers ------------------------------------------------------------


def normalize_email_consent_update(payload: Any) -> CustomerSnapshot:
    body = as_object(payload, "payload")
    if "customer_id" not in body:
        raise PayloadError("customer_id", "missing customer id")
    if "email_marketing_consent" not in body:
        raise PayloadError("email_marketing_consent", "missing")
    values: dict[str, Any] = {
        "id": parse_id(body["customer_id"], "customer_id"),
        "email_marketing_consent": _rest_consent(body["email_marketing_consent"], "email_marketing_consent"),
    }
    if "email_address" in body:
        values["email"] = opt_email(body["email_address"], "email_address")
    return CustomerSnapshot(**values)


def normalize_sms_consent_update(payload: Any) -> CustomerSnapshot:
    body = as_object(payload, "payload")
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    if "sms_marketing_consent" not in body:
        raise PayloadError("sms_marketing_consent", "missing")
    values: dict[str, Any] = {
        "id": parse_id(body["id"], "id"),
        "sms_marketing_consent": _rest_consent(body["sms_marketing_consent"], "sms_marketing_consent"),
    }
    if "phone" in body:
        values["phone"] = opt_str(body["phone"], "phone")
    return CustomerSnapshot(**values)


def normalize_tags_change(topic: str, payload: Any) -> TagsChange:
    if topic not in TAGS_TOPICS:
        raise PayloadError("topic", f"not a tags topic: {topic!r}")
    body = as_object(payload, "payload")
    key = next((k for k in ("customerId", "customer_id", "id") if k in body), None)
    if key is None:
        raise PayloadError("customerId", "missing customer id")
    if "tags" not in body:
        raise PayloadError("tags", "missing")
    tags = parse_tags(body["tags"], "tags")
    when = next((k for k in ("occurredAt", "occurred_at") if k in body), None)
    occurred = parse_time(body[when], when) if when else None
    added, removed = (tags, ()) if topic == "customer.tags_added" else ((), tags)
    return TagsChange(parse_id(body[key], key), added=added, removed=removed, occurred_at=occurred)
