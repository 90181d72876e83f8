"""Shopify's JSON shapes for each Admin API version, and Shopify-style body encoding.

`serialize_customer(customer, api_version, for_webhook)` is the heart: 2020-07 has
`accepts_marketing` and friends; 2021-10 adds `sms_marketing_consent`; 2022-04 adds
`email_marketing_consent`; 2024-01 drops `accepts_marketing*` and `marketing_opt_in_level`;
webhooks from 2025-01 drop `tags` and both consent objects. `shopify_json` encodes a payload the
way Shopify's Rails stack does (`/` as `\\/`, `&<>` and non-ASCII as `\\uXXXX`), so receivers
must hash the raw bytes rather than a re-serialisation.
"""

from __future__ import annotations

import codecs
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from sandbox.shopify.models import Address, Customer, Image, Order, Product, Subscription, Variant

SHOP_TZ = ZoneInfo("Europe/Stockholm")
FIRST_VERSION = 202007
_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$")


def version_number(api_version: str) -> int | None:
    """`2021-10` -> 202110; None for anything that is not a quarterly release name."""
    match = _VERSION.match(api_version)
    if match is None:
        return None
    return int(match.group(1)) * 100 + int(match.group(2))


def supported_version(api_version: str, today: datetime | None = None) -> bool:
    """Released quarterly versions from 2020-07 up to the next release candidate."""
    number = version_number(api_version)
    if number is None or number < FIRST_VERSION:
        return False
    now = today or datetime.now(UTC)
    months = now.year * 12 + now.month - 1 + 3  # the release candidate is served too
    return number <= (months // 12) * 100 + months % 12 + 1


def fmt_time(ts: int | None) -> str | None:
    """REST times: ISO 8601 in the shop's time zone, e.g. `2024-03-01T10:00:00+01:00`."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, SHOP_TZ).isoformat()


def fmt_utc(ts: int | None) -> str | None:
    """GraphQL `DateTime`: UTC with a `Z`. (`time.strftime` over `gmtime`: a third of
    `datetime.strftime`'s cost, and a bulk export formats several times a customer.)"""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def gid(kind: str, ident: int) -> str:
    return f"gid://shopify/{kind}/{ident}"


# --- customers ----------------------------------------------------------------------------------


def serialize_address(address: Address, customer_id: int) -> dict[str, Any]:
    return {
        "id": address.id,
        "customer_id": customer_id,
        "first_name": address.first_name,
        "last_name": address.last_name,
        "company": address.company,
        "address1": address.address1,
        "address2": address.address2,
        "city": address.city,
        "province": address.province,
        "country": address.country,
        "zip": address.zip,
        "phone": address.phone,
        "name": f"{address.first_name} {address.last_name}",
        "province_code": address.province_code,
        "country_code": address.country_code,
        "country_name": address.country,
        "default": address.default,
    }


def email_consent_dict(customer: Customer) -> dict[str, Any] | None:
    consent = customer.email_consent
    if consent is None:
        return None
    return {
        "state": consent.state,
        "opt_in_level": consent.opt_in_level,
        "consent_updated_at": fmt_time(consent.consent_updated_at),
    }


def sms_consent_dict(customer: Customer) -> dict[str, Any] | None:
    consent = customer.sms_consent
    if consent is None or customer.phone is None:
        return None
    return {
        "state": consent.state,
        "opt_in_level": consent.opt_in_level,
        "consent_updated_at": fmt_time(consent.consent_updated_at),
        "consent_collected_from": consent.consent_collected_from,
    }


def serialize_customer(customer: Customer, api_version: str, for_webhook: bool = False) -> dict[str, Any]:
    """The customer as `api_version` shows it (REST body or `customers/*` webhook payload).

    Key order follows Shopify's (`email` moved after `last_order_name` once `accepts_marketing`
    went); `default_address` is absent, not null, for a customer without addresses."""
    version = version_number(api_version) or FIRST_VERSION
    legacy_marketing = version < 202401
    slim_webhook = for_webhook and version >= 202501
    consent = customer.email_consent
    out: dict[str, Any] = {"id": customer.id}
    if legacy_marketing:
        out["email"] = customer.email
        out["accepts_marketing"] = consent is not None and consent.state == "subscribed"
    out["created_at"] = fmt_time(customer.created_at)
    out["updated_at"] = fmt_time(customer.updated_at)
    out["first_name"] = customer.first_name
    out["last_name"] = customer.last_name
    out["orders_count"] = customer.orders_count
    out["state"] = customer.state
    out["total_spent"] = money(customer.total_spent_cents)
    out["last_order_id"] = customer.last_order_id
    out["note"] = customer.note
    out["verified_email"] = customer.verified_email
    out["multipass_identifier"] = None
    out["tax_exempt"] = customer.tax_exempt
    if legacy_marketing:
        out["phone"] = customer.phone
    if not slim_webhook:
        out["tags"] = ", ".join(customer.tags)
    out["last_order_name"] = customer.last_order_name
    if not legacy_marketing:
        out["email"] = customer.email
        out["phone"] = customer.phone
    out["currency"] = customer.currency
    out["addresses"] = [serialize_address(a, customer.id) for a in customer.addresses]
    if legacy_marketing:
        out["accepts_marketing_updated_at"] = fmt_time(
            consent.consent_updated_at if consent and consent.consent_updated_at else customer.created_at
        )
        out["marketing_opt_in_level"] = (
            consent.opt_in_level if consent and consent.state == "subscribed" else None
        )
    out["tax_exemptions"] = []
    if not slim_webhook:
        if version >= 202204:
            out["email_marketing_consent"] = email_consent_dict(customer)
        if version >= 202110:
            out["sms_marketing_consent"] = sms_consent_dict(customer)
    out["admin_graphql_api_id"] = gid("Customer", customer.id)
    default = customer.default_address
    if default is not None:
        out["default_address"] = serialize_address(default, customer.id)
    return out


def email_consent_payload(customer: Customer) -> dict[str, Any]:
    """`customers_email_marketing_consent/update`."""
    return {
        "customer_id": customer.id,
        "email_address": customer.email,
        "email_marketing_consent": email_consent_dict(customer),
    }


def sms_consent_payload(customer: Customer) -> dict[str, Any]:
    """`customers_marketing_consent/update` (the SMS topic)."""
    return {"id": customer.id, "phone": customer.phone, "sms_marketing_consent": sms_consent_dict(customer)}


def tags_payload(customer_id: int, tags: list[str], occurred_at: int) -> dict[str, Any]:
    """`customer.tags_added` / `customer.tags_removed`: the changed tags only, GraphQL-style keys."""
    return {
        "customerId": gid("Customer", customer_id),
        "tags": tags,
        "occurredAt": datetime.fromtimestamp(occurred_at, UTC).isoformat(timespec="milliseconds"),
    }


def delete_payload(customer_id: int, api_version: str) -> dict[str, Any]:
    """`customers/delete`: the id and empty shells of the rest."""
    version = version_number(api_version) or FIRST_VERSION
    out: dict[str, Any] = {"id": customer_id, "phone": None, "addresses": [], "tax_exemptions": []}
    if version < 202501:
        if version >= 202204:
            out["email_marketing_consent"] = None
        if version >= 202110:
            out["sms_marketing_consent"] = None
    out["admin_graphql_api_id"] = gid("Customer", customer_id)
    return out


# --- orders and products ------------------------------------------------------------------------


def money_set(cents: int, currency: str) -> dict[str, Any]:
    amount = {"amount": money(cents), "currency_code": currency}
    return {"shop_money": amount, "presentment_money": dict(amount)}


def serialize_order(
    order: Order, customer: Customer | None, api_version: str, for_webhook: bool = False
) -> dict[str, Any]:
    cur = order.currency
    out: dict[str, Any] = {
        "id": order.id,
        "admin_graphql_api_id": gid("Order", order.id),
        "name": order.name,
        "number": order.number - 1000,
        "order_number": order.number,
        "email": order.email,
        "contact_email": order.email,
        "phone": order.phone,
        "created_at": fmt_time(order.created_at),
        "updated_at": fmt_time(order.updated_at),
        "processed_at": fmt_time(order.processed_at),
        "closed_at": fmt_time(order.closed_at),
        "cancelled_at": fmt_time(order.cancelled_at),
        "cancel_reason": order.cancel_reason,
        "confirmed": True,
        "test": False,
        "currency": cur,
        "presentment_currency": cur,
        "financial_status": order.financial_status,
        "fulfillment_status": order.fulfillment_status,
        "buyer_accepts_marketing": order.buyer_accepts_marketing,
        "taxes_included": True,
        "total_price": money(order.total_cents),
        "subtotal_price": money(order.subtotal_cents),
        "total_line_items_price": money(order.line_items_cents),
        "total_discounts": money(order.discount_cents),
        "total_tax": money(order.tax_cents),
        "total_weight": sum(item.grams * item.quantity for item in order.line_items),
        "total_price_set": money_set(order.total_cents, cur),
        "subtotal_price_set": money_set(order.subtotal_cents, cur),
        "total_discounts_set": money_set(order.discount_cents, cur),
        "total_tax_set": money_set(order.tax_cents, cur),
        "total_shipping_price_set": money_set(order.shipping_cents, cur),
        "discount_codes": [
            {"code": c.code, "amount": money(c.amount_cents), "type": c.type} for c in order.discount_codes
        ],
        "line_items": [
            {
                "id": item.id,
                "admin_graphql_api_id": gid("LineItem", item.id),
                "product_id": item.product_id,
                "variant_id": item.variant_id,
                "title": item.title,
                "variant_title": item.variant_title,
                "name": f"{item.title} - {item.variant_title}"
                if item.variant_title != "Default Title"
                else item.title,
                "sku": item.sku,
                "vendor": item.vendor,
                "quantity": item.quantity,
                "fulfillable_quantity": 0 if order.fulfillment_status else item.quantity,
                "fulfillment_status": order.fulfillment_status,
                "price": money(item.price_cents),
                "price_set": money_set(item.price_cents, cur),
                "total_discount": "0.00",
                "grams": item.grams,
                "gift_card": False,
                "requires_shipping": True,
                "taxable": True,
                "product_exists": True,
                "properties": [],
            }
            for item in order.line_items
        ],
        "shipping_lines": [
            {
                "id": order.id + 1,
                "title": "PostNord MyPack" if order.shipping_cents else "Fri frakt",
                "code": "postnord",
                "source": "shopify",
                "price": money(order.shipping_cents),
                "price_set": money_set(order.shipping_cents, cur),
            }
        ],
        "shipping_address": _order_address(order.shipping_address),
        "billing_address": _order_address(order.billing_address),
        "customer": None,
    }
    if customer is not None:
        embedded = serialize_customer(customer, api_version, for_webhook)
        embedded.pop("addresses", None)
        out["customer"] = embedded
    return out


def _order_address(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    body = serialize_address(address, 0)
    for key in ("id", "customer_id", "default", "country_name"):
        body.pop(key)
    return body


def _serialize_image(
    image: Image, variants: tuple[Variant, ...], created: int, updated: int
) -> dict[str, Any]:
    return {
        "id": image.id,
        "admin_graphql_api_id": gid("ProductImage", image.id),
        "product_id": image.product_id,
        "position": image.position,
        "created_at": fmt_time(created),
        "updated_at": fmt_time(updated),
        "alt": image.alt,
        "width": image.width,
        "height": image.height,
        "src": image.src,
        "variant_ids": [v.id for v in variants if v.image_id == image.id],
    }


def serialize_product(product: Product) -> dict[str, Any]:
    created, updated = product.created_at, product.updated_at
    images = [_serialize_image(img, product.variants, created, updated) for img in product.images]
    option_name = (
        "Title"
        if len(product.variants) == 1
        else "Storlek"
        if product.variants[0].title in ("XS", "S", "M", "L", "XL")
        else "Färg"
    )
    return {
        "id": product.id,
        "title": product.title,
        "body_html": product.body_html,
        "vendor": product.vendor,
        "product_type": product.product_type,
        "created_at": fmt_time(created),
        "handle": product.handle,
        "updated_at": fmt_time(updated),
        "published_at": fmt_time(product.published_at),
        "template_suffix": None,
        "published_scope": "global",
        "tags": ", ".join(product.tags),
        "status": product.status,
        "admin_graphql_api_id": gid("Product", product.id),
        "variants": [
            {
                "id": v.id,
                "product_id": product.id,
                "title": v.title,
                "price": money(v.price_cents),
                "sku": v.sku,
                "position": v.position,
                "inventory_policy": "deny",
                "compare_at_price": money(v.compare_at_cents) if v.compare_at_cents is not None else None,
                "fulfillment_service": "manual",
                "inventory_management": "shopify",
                "option1": v.title,
                "option2": None,
                "option3": None,
                "created_at": fmt_time(created),
                "updated_at": fmt_time(updated),
                "taxable": True,
                "barcode": None,
                "grams": v.grams,
                "weight": v.grams / 1000,
                "weight_unit": "kg",
                "inventory_quantity": v.inventory_quantity,
                "requires_shipping": True,
                "admin_graphql_api_id": gid("ProductVariant", v.id),
                "image_id": v.image_id,
            }
            for v in product.variants
        ],
        "options": [
            {
                "id": product.id + 7,
                "product_id": product.id,
                "name": option_name,
                "position": 1,
                "values": [v.title for v in product.variants],
            }
        ],
        "images": images,
        "image": images[0] if images else None,
    }


def serialize_subscription(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "address": sub.address,
        "topic": sub.topic,
        "created_at": fmt_time(sub.created_at),
        "updated_at": fmt_time(sub.updated_at),
        "format": "json",
        "fields": list(sub.fields),
        "metafield_namespaces": [],
        "api_version": sub.api_version,
        "private_metafield_namespaces": [],
    }


# --- GraphQL shape (bulk export) ----------------------------------------------------------------


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


def graphql_customer(customer: Customer) -> dict[str, Any]:
    default = customer.default_address
    email = customer.email_consent
    sms = customer.sms_consent if customer.phone else None
    return {
        "id": gid("Customer", customer.id),
        "email": customer.email,
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "phone": customer.phone,
        "tags": list(customer.tags),
        "state": customer.state.upper(),
        "verifiedEmail": customer.verified_email,
        "note": customer.note,
        "numberOfOrders": str(customer.orders_count),
        "amountSpent": {"amount": money(customer.total_spent_cents), "currencyCode": customer.currency},
        "createdAt": fmt_utc(customer.created_at),
        "updatedAt": fmt_utc(customer.updated_at),
        "defaultAddress": None
        if default is None
        else {
            "id": f"gid://shopify/MailingAddress/{default.id}?model_name=CustomerAddress",
            "firstName": default.first_name,
            "lastName": default.last_name,
            "company": default.company,
            "address1": default.address1,
            "address2": default.address2,
            "city": default.city,
            "province": default.province,
            "provinceCode": default.province_code,
            "country": default.country,
            "countryCodeV2": default.country_code,
            "zip": default.zip,
            "phone": default.phone,
        },
        "emailMarketingConsent": None
        if email is None
        else {
            "marketingState": email.state.upper(),
            "marketingOptInLevel": _upper(email.opt_in_level),
            "consentUpdatedAt": fmt_utc(email.consent_updated_at),
        },
        "smsMarketingConsent": None
        if sms is None
        else {
            "marketingState": sms.state.upper(),
            "marketingOptInLevel": _upper(sms.opt_in_level),
            "consentUpdatedAt": fmt_utc(sms.consent_updated_at),
            "consentCollectedFrom": sms.consent_collected_from,
        },
    }


# --- encoding -----------------------------------------------------------------------------------


def _u_escape(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeEncodeError)
    parts = []
    for ch in error.object[error.start : error.end]:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            parts.append(f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}")
        else:
            parts.append(f"\\u{cp:04x}")
    return "".join(parts), error.end


codecs.register_error("shopify_json_escape", _u_escape)


def shopify_json(payload: Any) -> bytes:
    """JSON the way Shopify sends webhooks: `\\/`, `\\u0026`, `\\u003c`, `\\u003e`, `\\u00e5`..."""
    text = orjson.dumps(payload).decode("utf-8")
    # These characters never occur outside strings in JSON, so plain replacement is safe.
    text = text.replace("/", "\\/").replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return text.encode("ascii", "shopify_json_escape")
