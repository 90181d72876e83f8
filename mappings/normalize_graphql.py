"""Customer lines of a GraphQL bulk export (JSONL already parsed) -> `CustomerSnapshot`.

The same decisions as the REST payloads (`mappings.normalize`): a key absent is `UNKNOWN`, a
key present with `null` is known and empty, extra keys land in `raw` (in snake case). Both the
older fields (`email`, `phone`, `emailMarketingConsent`, `smsMarketingConsent`, `ordersCount`,
`totalSpentV2`) and their newer forms (`defaultEmailAddress`, `defaultPhoneNumber` and its
`smsMarketingConsent` from 2026-10, `numberOfOrders`, `amountSpent`) are read; child lines
(`__parentId`) are refused.
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
    opt_object,
    opt_str,
    parse_address,
    parse_addresses,
    parse_id,
    parse_tags,
    parse_time,
    snake_case,
)
from mappings.snapshot import Consent, CustomerSnapshot, PayloadError

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
    body = as_object(line, "line")
    if "__parentId" in body:
        raise PayloadError("__parentId", "a child line of the export, not a customer")
    if "id" not in body:
        raise PayloadError("id", "missing customer id")
    values: dict[str, Any] = {"id": parse_id(body["id"], "id")}
    for src, dst in (("firstName", "first_name"), ("lastName", "last_name")):
        if src in body:
            values[dst] = opt_str(body[src], src)
    email_obj = opt_object(body.get("defaultEmailAddress"), "defaultEmailAddress")
    phone_obj = opt_object(body.get("defaultPhoneNumber"), "defaultPhoneNumber")
    if "email" in body:
        values["email"] = opt_email(body["email"], "email")
    elif "defaultEmailAddress" in body:
        values["email"] = opt_email(
            email_obj.get("emailAddress") if email_obj else None, "defaultEmailAddress"
        )
    if "phone" in body:
        values["phone"] = opt_str(body["phone"], "phone")
    elif "defaultPhoneNumber" in body:
        values["phone"] = opt_str(phone_obj.get("phoneNumber") if phone_obj else None, "defaultPhoneNumber")
    if "state" in body:
        state = opt_str(body["state"], "state")
        values["state"] = state.lower() if state else state
    if "verifiedEmail" in body:
        values["verified_email"] = opt_bool(body["verifiedEmail"], "verifiedEmail")
    if "tags" in body:
        values["tags"] = parse_tags(body["tags"], "tags")
    if "addresses" in body:
        values["addresses"] = parse_addresses(body["addresses"], "addresses")
    if "defaultAddress" in body:
        values["default_address"] = parse_address(body["defaultAddress"], "defaultAddress")
    for key in ("numberOfOrders", "ordersCount"):
        if key in body:
            values["orders_count"] = opt_int(body[key], key)
            break
    for key in ("amountSpent", "totalSpentV2"):
        if key in body:
            money = opt_object(body[key], key)
            values["total_spent"] = opt_decimal(money.get("amount") if money else None, f"{key}.amount")
            values["currency"] = opt_str(money.get("currencyCode") if money else None, f"{key}.currencyCode")
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
        values["sms_marketing_consent"] = _phone_consent(phone_obj)
    raw = {snake_case(k): v for k, v in body.items() if k not in _GQL_TYPED}
    return CustomerSnapshot(**values, raw=raw)


def _phone_consent(phone: Mapping[str, Any] | None) -> Consent | None:
    """SMS consent of `defaultPhoneNumber`: its `smsMarketingConsent {state optInLevel
    updatedAt}` (2026-10 on), else its own `marketingState`/`marketingOptInLevel`/`marketingUpdatedAt`."""
    if phone is not None and "smsMarketingConsent" in phone:
        obj = opt_object(phone["smsMarketingConsent"], "defaultPhoneNumber.smsMarketingConsent")
        if obj is None:
            return None
        state = obj.get("state")
        renamed = {  # 2026-10's CustomerMarketingConsentState says NEVER_SUBSCRIBED for not_subscribed
            "marketingState": "NOT_SUBSCRIBED" if state == "NEVER_SUBSCRIBED" else state,
            "marketingOptInLevel": obj.get("optInLevel"),
            "marketingUpdatedAt": obj.get("updatedAt"),
        }
        return _gql_consent(renamed, "defaultPhoneNumber.smsMarketingConsent")
    return _gql_consent(phone, "defaultPhoneNumber")


def _gql_consent(value: Any, key: str) -> Consent | None:
    obj = opt_object(value, key)
    if obj is None or obj.get("marketingState") is None:
        return None
    when_key = "consentUpdatedAt" if "consentUpdatedAt" in obj else "marketingUpdatedAt"
    level = opt_str(obj.get("marketingOptInLevel"), f"{key}.marketingOptInLevel")
    return Consent(
        state=consent_state(obj["marketingState"], f"{key}.marketingState"),
        opt_in_level=level.lower() if level else None,
        updated_at=parse_time(obj.get(when_key), f"{key}.{when_key}"),
    )
