"""Realistic Shopify customer payloads per API version and topic, for tests anywhere.

Every builder returns a fresh dict; keyword arguments override top-level keys. Shapes follow
Shopify's documented webhook examples for each version (fields added and removed over time).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mappings.installation import (
    ApsisAccount,
    Condition,
    ConsentMapping,
    Section,
    Shop,
)
from mappings.installation_parse import parse_installations

CUSTOMER_ID = 706405506930370084
GID = f"gid://shopify/Customer/{CUSTOMER_ID}"
DEMO_TOML = Path(__file__).resolve().parents[2] / "mappings" / "demo.toml"


def address(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1053317290,
        "customer_id": CUSTOMER_ID,
        "first_name": "Bob",
        "last_name": "Biller",
        "company": None,
        "address1": "Drottninggatan 1",
        "address2": None,
        "city": "Stockholm",
        "province": None,
        "country": "Sweden",
        "zip": "111 51",
        "phone": "+46701234567",
        "name": "Bob Biller",
        "province_code": None,
        "country_code": "SE",
        "country_name": "Sweden",
        "default": True,
    }
    return {**base, **overrides}


def rest_2020_07(**overrides: Any) -> dict[str, Any]:
    """`customers/update` as delivered at API version 2020-07 (legacy consent fields)."""
    base: dict[str, Any] = {
        "id": CUSTOMER_ID,
        "email": "Bob@Example.com",
        "accepts_marketing": True,
        "created_at": "2020-06-01T10:00:00-04:00",
        "updated_at": "2021-03-01T12:00:00-05:00",
        "first_name": "Bob",
        "last_name": "Biller",
        "orders_count": 3,
        "state": "enabled",
        "total_spent": "199.65",
        "last_order_id": 450789469,
        "note": "VIP since 2019",
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "phone": "+46701234567",
        "tags": "vip, newsletter",
        "last_order_name": "#1001",
        "currency": "SEK",
        "accepts_marketing_updated_at": "2020-06-01T10:00:05-04:00",
        "marketing_opt_in_level": "single_opt_in",
        "tax_exemptions": [],
        "admin_graphql_api_id": GID,
        "addresses": [address()],
        "default_address": address(),
    }
    return {**base, **overrides}


def rest_2021_10(**overrides: Any) -> dict[str, Any]:
    """2021-10 adds `sms_marketing_consent`."""
    base = rest_2020_07(updated_at="2022-01-10T09:30:00+01:00")
    base["sms_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2022-01-10T09:29:00+01:00",
        "consent_collected_from": "SHOPIFY",
    }
    return {**base, **overrides}


def rest_2022_04(**overrides: Any) -> dict[str, Any]:
    """2022-04 adds `email_marketing_consent`; `accepts_marketing` still sent (deprecated)."""
    base = rest_2021_10(updated_at="2023-05-02T08:00:00Z")
    base["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "confirmed_opt_in",
        "consent_updated_at": "2023-05-02T07:59:00Z",
    }
    return {**base, **overrides}


def rest_2024_10(**overrides: Any) -> dict[str, Any]:
    """2024-01 removed the legacy consent fields."""
    base = rest_2022_04(updated_at="2024-11-05T14:00:00-05:00")
    for key in ("accepts_marketing", "accepts_marketing_updated_at", "marketing_opt_in_level"):
        base.pop(key)
    return {**base, **overrides}


def rest_2025_01(**overrides: Any) -> dict[str, Any]:
    """2025-01 customer webhooks: no tags, no consent objects."""
    base = rest_2024_10(updated_at="2025-02-01T10:00:00Z")
    for key in ("tags", "email_marketing_consent", "sms_marketing_consent"):
        base.pop(key)
    return {**base, **overrides}


def email_consent_topic(state: str = "unsubscribed", **overrides: Any) -> dict[str, Any]:
    """`customers_email_marketing_consent/update`."""
    base: dict[str, Any] = {
        "customer_id": CUSTOMER_ID,
        "email_address": "bob@example.com",
        "email_marketing_consent": {
            "state": state,
            "opt_in_level": "single_opt_in",
            "consent_updated_at": "2025-02-02T10:00:00Z",
        },
    }
    return {**base, **overrides}


def sms_consent_topic(state: str = "unsubscribed", **overrides: Any) -> dict[str, Any]:
    """`customers_marketing_consent/update`."""
    base: dict[str, Any] = {
        "id": CUSTOMER_ID,
        "phone": "+46701234567",
        "sms_marketing_consent": {
            "state": state,
            "opt_in_level": "single_opt_in",
            "consent_updated_at": "2025-02-02T10:05:00Z",
            "consent_collected_from": "OTHER",
        },
    }
    return {**base, **overrides}


def tags_topic(
    tags: list[str], occurred_at: str = "2025-02-03T10:00:00Z", **overrides: Any
) -> dict[str, Any]:
    """`customer.tags_added` / `customer.tags_removed`: the tags added or removed, not the full list."""
    base: dict[str, Any] = {"customerId": GID, "tags": tags, "occurredAt": occurred_at}
    return {**base, **overrides}


def bulk_line(**overrides: Any) -> dict[str, Any]:
    """One customer line of a GraphQL bulk export (JSONL), older field names."""
    base: dict[str, Any] = {
        "id": GID,
        "email": "bob@example.com",
        "phone": "+46701234567",
        "firstName": "Bob",
        "lastName": "Biller",
        "tags": ["vip", "newsletter"],
        "state": "ENABLED",
        "verifiedEmail": True,
        "note": "VIP since 2019",
        "numberOfOrders": "3",
        "amountSpent": {"amount": "199.65", "currencyCode": "SEK"},
        "createdAt": "2020-06-01T14:00:00Z",
        "updatedAt": "2024-11-05T19:00:00Z",
        "defaultAddress": {
            "id": "gid://shopify/MailingAddress/1053317290?model_name=CustomerAddress",
            "address1": "Drottninggatan 1",
            "city": "Stockholm",
            "countryCodeV2": "SE",
            "provinceCode": None,
            "zip": "111 51",
        },
        "addresses": [{"city": "Stockholm", "countryCodeV2": "SE"}],
        "emailMarketingConsent": {
            "marketingState": "SUBSCRIBED",
            "marketingOptInLevel": "CONFIRMED_OPT_IN",
            "consentUpdatedAt": "2023-05-02T07:59:00Z",
        },
        "smsMarketingConsent": {
            "marketingState": "SUBSCRIBED",
            "marketingOptInLevel": "SINGLE_OPT_IN",
            "consentUpdatedAt": "2022-01-10T08:29:00Z",
            "consentCollectedFrom": "SHOPIFY",
        },
    }
    return {**base, **overrides}


def bulk_line_v2(**overrides: Any) -> dict[str, Any]:
    """A bulk line with the newer `defaultEmailAddress` / `defaultPhoneNumber` objects."""
    base = bulk_line()
    for key in ("email", "phone", "emailMarketingConsent", "smsMarketingConsent"):
        base.pop(key)
    base["defaultEmailAddress"] = {
        "emailAddress": "bob@example.com",
        "marketingState": "SUBSCRIBED",
        "marketingOptInLevel": "SINGLE_OPT_IN",
        "marketingUpdatedAt": "2023-05-02T07:59:00Z",
    }
    base["defaultPhoneNumber"] = {
        "phoneNumber": "+46701234567",
        "marketingState": "UNSUBSCRIBED",
        "marketingOptInLevel": None,
        "marketingUpdatedAt": "2024-01-01T00:00:00Z",
    }
    return {**base, **overrides}


# --- installations ----------------------------------------------------------------------------

EMAIL = ConsentMapping("email", ("topic.news", "topic.offers"))
SMS = ConsentMapping("sms", ("topic.sms",))


def section(
    discriminator: str = "sec.main",
    conditions: tuple[Condition, ...] = (),
    attributes: dict[str, str] | None = None,
    email: ConsentMapping | None = EMAIL,
    sms: ConsentMapping | None = SMS,
) -> Section:
    mapped = (
        attributes
        if attributes is not None
        else {"email": "1", "first_name": "2", "tags": "3", "total_spent": "4", "phone": "5"}
    )
    return Section(discriminator, conditions, mapped, email, sms)


def shop(*sections: Section) -> Shop:
    return Shop(
        domain="test.myshopify.com",
        admin_url="http://127.0.0.1:1",
        api_version="2024-10",
        access_token="token",
        webhook_secret="secret",
        apsis=ApsisAccount("http://127.0.0.1:2", "id", "secret", "ks.test"),
        sections=sections or (section(),),
    )


def demo_shop() -> Shop:
    with DEMO_TOML.open("rb") as f:
        installations = parse_installations(tomllib.load(f), {}, str(DEMO_TOML))
    result = installations.get("demo-store.myshopify.com")
    assert result is not None
    return result


# --- orders -------------------------------------------------------------------------------------


def line_item(n: int = 1, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 466157049 + n,
        "product_id": 632910392,
        "variant_id": 39072856 + n,
        "sku": f"IPOD-{n}",
        "title": "IPod Nano - 8gb",
        "variant_title": "green",
        "vendor": None,
        "quantity": 2,
        "price": "199.00",
        "total_discount": "10.00",
        "name": "IPod Nano - 8gb - green",
    }
    return {**base, **overrides}


def order(lines: int = 2, **overrides: Any) -> dict[str, Any]:
    """`orders/paid` (REST, 2024-10 shape)."""
    base: dict[str, Any] = {
        "id": 820982911946154508,
        "name": "#9999",
        "order_number": 1234,
        "email": "bob@example.com",
        "created_at": "2024-11-05T13:00:00-05:00",
        "processed_at": "2024-11-05T13:00:05-05:00",
        "currency": "SEK",
        "total_price": "403.00",
        "subtotal_price": "388.00",
        "total_discounts": "20.00",
        "total_tax": "77.60",
        "total_shipping_price_set": {
            "shop_money": {"amount": "15.00", "currency_code": "SEK"},
            "presentment_money": {"amount": "15.00", "currency_code": "SEK"},
        },
        "financial_status": "paid",
        "discount_codes": [{"code": "TENOFF", "amount": "20.00", "type": "fixed_amount"}],
        "line_items": [line_item(n) for n in range(1, lines + 1)],
        "customer": {"id": CUSTOMER_ID, "email": "bob@example.com", "admin_graphql_api_id": GID},
    }
    return {**base, **overrides}
