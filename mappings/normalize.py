"""Shopify payloads (REST webhooks 2020-07 .. newest, GraphQL bulk lines) -> `CustomerSnapshot`.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.snapshot import (
    CONSENT_STATES,
    UNKNOWN,
    Consent,
    CustomerSnapshot,
    Known,
    PayloadError,
    TagsChange,
)

CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update", "customers/enable", "customers/disable"})
EMAIL_CONSENT_TOPIC = "customers_email_marketing_consent/update"
SMS_CONSENT_TOPIC = "customers_marketing_consent/update"
TAGS_TOPICS = frozenset({"customer.tags_added", "customer.tags_removed"})

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(\?.*)?$")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")

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
    body = _object(payload, "payload")
    for key in ("id", "customer_id", "customerId"):
        if key in body:
            return parse_id(body[key], key)
    if isinstance(body.get("customer"), Mapping):
        return customer_id(body["customer"])
    raise PayloadError("id", "missing customer id")


# --- REST customers/* (and the Admin API customer resource) ------------------------------------


def normalize_customer(payload: Any) -> CustomerSnapshot:
    body = _object(payload, "payload")
    if "id" not in body and isinstance(body.get("customer"), Mapping):
        body = body["customer"]  # `GET customers/{id}.json` wraps the resource
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    values: dict[str, Any] = {"id": parse_id(body["id"], "id")}
    for key in ("first_name", "last_name", "currency"):
        if key in body:
            values[key] = _opt_str(body[key], key)
    if "email" in body:
        values["email"] = _email(body["email"], "email")
    if "phone" in body:
        values["phone"] = _opt_str(body["phone"], "phone")
    if "state" in body:
        state = _opt_str(body["state"], "state")
        values["state"] = state.lower() if state else state
    if "verified_email" in body:
        values["verified_email"] = _opt_bool(body["verified_email"], "verified_email")
    if "tags" in body:
        values["tags"] = _tags(body["tags"], "tags")
    if "addresses" in body:
        values["addresses"] = _addresses(body["addresses"], "addresses")
    if "default_address" in body:
        values["default_address"] = _address(body["default_address"], "default_address")
    elif "addresses" in body:
        # Shopify leaves `default_address` out (rather than null) when there is no address: with
        # the address list present, its absence is knowledge, not a trimmed payload.
        values["default_address"] = next(
            (a for a in values["addresses"] if isinstance(a, Mapping) and a.get("default")), None
        )
    if "orders_count" in body:
        values["orders_count"] = _opt_int(body["orders_count"], "orders_count")
    if "total_spent" in body:
        values["total_spent"] = _opt_decimal(body["total_spent"], "total_spent")
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
    accepts = _opt_bool(body["accepts_marketing"], "accepts_marketing")
    if accepts is None:
        return None
    level = _opt_str(body.get("marketing_opt_in_level"), "marketing_opt_in_level")
    changed = parse_time(body.get("accepts_marketing_updated_at"), "accepts_marketing_updated_at")
    return Consent("subscribed" if accepts else "not_subscribed", level, changed)


def _rest_consent(value: Any, key: str) -> Consent | None:
    if value is None:
        return None
    obj = _object(value, key)
    if "state" not in obj:
        raise PayloadError(f"{key}.state", "missing")
    return Consent(
        state=_consent_state(obj["state"], f"{key}.state"),
        opt_in_level=_opt_str(obj.get("opt_in_level"), f"{key}.opt_in_level"),
        updated_at=parse_time(obj.get("consent_updated_at"), f"{key}.consent_updated_at"),
    )


# --- topics with partial customers ------------------------------------------------------------


def normalize_email_consent_update(payload: Any) -> CustomerSnapshot:
    body = _object(payload, "payload")
    if "customer_id" not in body:
        raise PayloadError("customer_id", "missing customer id")
    if "email_marketing_consent" not in body:
        raise PayloadError("email_marketing_consent", "missing")
    values: dict[str, Any] = {
        "id": parse_id(body["customer_id"], "customer_id"),
        "email_marketing_consent": _rest_consent(body["email_marketing_consent"], "email_marketing_consent"),
    }
    if "email_address" in body:
        values["email"] = _email(body["email_address"], "email_address")
    return CustomerSnapshot(**values)


def normalize_sms_consent_update(payload: Any) -> CustomerSnapshot:
    body = _object(payload, "payload")
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    if "sms_marketing_consent" not in body:
        raise PayloadError("sms_marketing_consent", "missing")
    values: dict[str, Any] = {
        "id": parse_id(body["id"], "id"),
        "sms_marketing_consent": _rest_consent(body["sms_marketing_consent"], "sms_marketing_consent"),
    }
    if "phone" in body:
        values["phone"] = _opt_str(body["phone"], "phone")
    return CustomerSnapshot(**values)


def normalize_tags_change(topic: str, payload: Any) -> TagsChange:
    if topic not in TAGS_TOPICS:
        raise PayloadError("topic", f"not a tags topic: {topic!r}")
    body = _object(payload, "payload")
    key = next((k for k in ("customerId", "customer_id", "id") if k in body), None)
    if key is None:
        raise PayloadError("customerId", "missing customer id")
    if "tags" not in body:
        raise PayloadError("tags", "missing")
    tags = _tags(body["tags"], "tags")
    when = next((k for k in ("occurredAt", "occurred_at") if k in body), None)
    occurred = parse_time(body[when], when) if when else None
    added, removed = (tags, ()) if topic == "customer.tags_added" else ((), tags)
    return TagsChange(parse_id(body[key], key), added=added, removed=removed, occurred_at=occurred)


# --- GraphQL bulk export -----------------------------------------------------------------------

_GQL_TYPED = frozenset(
    {
        "id",
        "email",
        "phone",
        "firstName",
        "lastName",
        "tags",
        "state",
        "verifiedEmail",
        "addresses",
        "defaultAddress",
        "numberOfOrders",
        "ordersCount",
        "amountSpent",
        "totalSpentV2",
        "createdAt",
        "updatedAt",
        "emailMarketingConsent",
        "smsMarketingConsent",
        "defaultEmailAddress",
        "defaultPhoneNumber",
    }
)


def normalize_bulk_customer(line: Any) -> CustomerSnapshot:
    """One customer line of a GraphQL bulk export (JSONL already parsed).

    Accepts `email`/`phone`/`emailMarketingConsent`/`smsMarketingConsent` and their newer
    forms `defaultEmailAddress`/`defaultPhoneNumber`. Child lines (`__parentId`) are refused.
    """
    body = _object(line, "line")
    if "__parentId" in body:
        raise PayloadError("__parentId", "a child line of the export, not a customer")
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    values: dict[str, Any] = {"id": parse_id(body["id"], "id")}
    for src, dst in (("firstName", "first_name"), ("lastName", "last_name")):
        if src in body:
            values[dst] = _opt_str(body[src], src)
    email_obj = _opt_object(body.get("defaultEmailAddress"), "defaultEmailAddress")
    phone_obj = _opt_object(body.get("defaultPhoneNumber"), "defaultPhoneNumber")
    if "email" in body:
        values["email"] = _email(body["email"], "email")
    elif "defaultEmailAddress" in body:
        values["email"] = _email(email_obj.get("emailAddress") if email_obj else None, "defaultEmailAddress")
    if "phone" in body:
        values["phone"] = _opt_str(body["phone"], "phone")
    elif "defaultPhoneNumber" in body:
        values["phone"] = _opt_str(phone_obj.get("phoneNumber") if phone_obj else None, "defaultPhoneNumber")
    if "state" in body:
        state = _opt_str(body["state"], "state")
        values["state"] = state.lower() if state else state
    if "verifiedEmail" in body:
        values["verified_email"] = _opt_bool(body["verifiedEmail"], "verifiedEmail")
    if "tags" in body:
        values["tags"] = _tags(body["tags"], "tags")
    if "addresses" in body:
        values["addresses"] = _addresses(body["addresses"], "addresses")
    if "defaultAddress" in body:
        values["default_address"] = _address(body["defaultAddress"], "defaultAddress")
    for key in ("numberOfOrders", "ordersCount"):
        if key in body:
            values["orders_count"] = _opt_int(body[key], key)
            break
    for key in ("amountSpent", "totalSpentV2"):
        if key in body:
            money = _opt_object(body[key], key)
            values["total_spent"] = _opt_decimal(money.get("amount") if money else None, f"{key}.amount")
            values["currency"] = _opt_str(money.get("currencyCode") if money else None, f"{key}.currencyCode")
            break
    for src, dst in (("createdAt", "created_at"), ("updatedAt", "updated_at")):
        if src in body:
            values[dst] = parse_time(body[src], src)
    if "emailMarketingConsent" in body:
        values["email_marketing_consent"] = _gql_consent(
            body["emailMarketingConsent"], "emailMarketingConsent"
        )
    elif "defaultEmailAddress" in body:
        values["email_marketing_consent"] = _gql_consent(email_obj, "defaultEmailAddress")
    if "smsMarketingConsent" in body:
        values["sms_marketing_consent"] = _gql_consent(body["smsMarketingConsent"], "smsMarketingConsent")
    elif "defaultPhoneNumber" in body:
        values["sms_marketing_consent"] = _gql_consent(phone_obj, "defaultPhoneNumber")
    raw = {_snake(k): v for k, v in body.items() if k not in _GQL_TYPED}
    return CustomerSnapshot(**values, raw=raw)


def _gql_consent(value: Any, key: str) -> Consent | None:
    obj = _opt_object(value, key)
    if obj is None or obj.get("marketingState") is None:
        return None
    when_key = "consentUpdatedAt" if "consentUpdatedAt" in obj else "marketingUpdatedAt"
    level = _opt_str(obj.get("marketingOptInLevel"), f"{key}.marketingOptInLevel")
    return Consent(
        state=_consent_state(obj["marketingState"], f"{key}.marketingState"),
        opt_in_level=level.lower() if level else None,
        updated_at=parse_time(obj.get(when_key), f"{key}.{when_key}"),
    )


# --- scalars -----------------------------------------------------------------------------------


def parse_id(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise PayloadError(key, "must be an id, not a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        match = _GID.match(value.strip())
        text = match.group(2) if match else value.strip()
        if not text.isdigit():
            raise PayloadError(key, f"not a customer id: {value!r}")
        result = int(text)
    else:
        raise PayloadError(key, f"must be an id, not {type(value).__name__}")
    if result <= 0:
        raise PayloadError(key, f"not a customer id: {value!r}")
    return result


def parse_time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, f"must be an ISO 8601 time, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(key, f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _object(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(key, f"must be an object, not {type(value).__name__}")
    return value


def _opt_object(value: Any, key: str) -> Mapping[str, Any] | None:
    return None if value is None else _object(value, key)


def _opt_str(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(key, f"must be a string, not {type(value).__name__}")
    return value.strip() or None


def _email(value: Any, key: str) -> str | None:
    text = _opt_str(value, key)
    return text.lower() if text else None


def _opt_bool(value: Any, key: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise PayloadError(key, f"must be true or false, not {type(value).__name__}")


def _opt_int(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise PayloadError(key, f"must be a whole number, not {value!r}")


def _opt_decimal(value: Any, key: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(key, f"must be a number, not {type(value).__name__}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise PayloadError(key, f"not a number: {value!r}") from None
    if not result.is_finite():
        raise PayloadError(key, f"not a number: {value!r}")
    return result


def _consent_state(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(key, f"must be a consent state, not {type(value).__name__}")
    state = value.strip().lower()
    if state not in CONSENT_STATES:
        raise PayloadError(key, f"unknown consent state {value!r}")
    return state


def _tags(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise PayloadError(key, f"must be a comma-separated string or a list, not {type(value).__name__}")
    tags: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise PayloadError(key, f"every tag must be a string, not {type(item).__name__}")
        tag = item.strip()
        if tag and tag.casefold() not in seen:
            tags.append(tag)
            seen.add(tag.casefold())
    return tuple(tags)


def _addresses(value: Any, key: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PayloadError(key, f"must be a list, not {type(value).__name__}")
    result = []
    for i, item in enumerate(value):
        address = _address(item, f"{key}[{i}]")
        if address is not None:
            result.append(address)
    return tuple(result)


def _address(value: Any, key: str) -> Mapping[str, Any] | None:
    """An address with REST keys (`country_code`, `province_code`, ...), from either API."""
    obj = _opt_object(value, key)
    if obj is None:
        return None
    result: dict[str, Any] = {}
    for name, item in obj.items():
        snake = _snake(name)
        if snake in ("country_code_v2", "country_code"):
            snake = "country_code"
        if isinstance(item, str) and _GID.match(item):
            item = parse_id(item, f"{key}.{name}")
        result.setdefault(snake, item)
    return result


def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()
