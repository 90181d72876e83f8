"""Store records in the GraphQL Admin API's shape (2026-10): plain dicts keyed by field name.

The executor's default resolver reads these keys, so a dict is both what a query resolves and
what a bulk export projects. Connection fields and links to other records (`orders`, `lineItems`,
`variants`, `lastOrder`, `customer`, `product`) are not in the dicts: resolvers in
`resolvers.py` fetch them from the store; `_model` keeps the record for them. Enum values are
Shopify's upper-case names; `UnsignedInt64` and `Decimal`/`Money` are strings, as Shopify sends them.
"""

from __future__ import annotations

from typing import Any

from sandbox.shopify.data import SHOP_CURRENCY
from sandbox.shopify.models import Address, Customer, LineItem, Order, Product, Subscription, Variant
from sandbox.shopify.serialize import fmt_utc, gid, money

Node = dict[str, Any]

# REST consent state -> `CustomerMarketingConsentState` (the 2026-10 `smsMarketingConsent` type).
CONSENT_STATE = {
    "subscribed": "SUBSCRIBED",
    "not_subscribed": "NEVER_SUBSCRIBED",
    "pending": "PENDING",
    "unsubscribed": "UNSUBSCRIBED",
    "redacted": "REDACTED",
}
FULFILLMENT = {None: "UNFULFILLED", "fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}


def parse_gid(value: str, kind: str | None = None) -> tuple[str, int] | None:
    """`gid://shopify/Customer/123` -> ("Customer", 123); None when it is not one (of `kind`)."""
    parts = value.split("?", 1)[0].split("/")
    if len(parts) != 5 or parts[:3] != ["gid:", "", "shopify"] or not parts[4].isdigit():
        return None
    if kind is not None and parts[3] != kind:
        return None
    return parts[3], int(parts[4])


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


def money_v2(cents: int, currency: str = SHOP_CURRENCY) -> Node:
    return {"amount": money(cents), "currencyCode": currency}


def money_bag(cents: int, currency: str = SHOP_CURRENCY) -> Node:
    amount = money_v2(cents, currency)
    return {"shopMoney": amount, "presentmentMoney": amount}


def address_node(address: Address, kind: str = "CustomerAddress") -> Node:
    return {
        "id": f"gid://shopify/MailingAddress/{address.id}?model_name={kind}",
        "firstName": address.first_name,
        "lastName": address.last_name,
        "name": f"{address.first_name} {address.last_name}".strip(),
        "company": address.company,
        "address1": address.address1,
        "address2": address.address2,
        "city": address.city,
        "province": address.province,
        "provinceCode": address.province_code,
        "country": address.country,
        "countryCodeV2": address.country_code,
        "zip": address.zip,
        "phone": address.phone,
    }


def _email_address(customer: Customer) -> Node | None:
    """`defaultEmailAddress`; None without an address or once redacted (the address is erased)."""
    consent = customer.email_consent
    if customer.email is None or (consent is not None and consent.state == "redacted"):
        return None
    return {
        "emailAddress": customer.email,
        "marketingState": consent.state.upper() if consent else "NOT_SUBSCRIBED",
        "marketingOptInLevel": _upper(consent.opt_in_level) if consent else None,
        "marketingUpdatedAt": fmt_utc(consent.consent_updated_at) if consent else None,
        "validFormat": True,
    }


def _phone_number(customer: Customer) -> Node | None:
    if customer.phone is None:
        return None
    sms = customer.sms_consent
    state = sms.state if sms else "not_subscribed"
    level = _upper(sms.opt_in_level) if sms else None
    updated = fmt_utc(sms.consent_updated_at) if sms else None
    collected = sms.consent_collected_from if sms else None
    return {
        "phoneNumber": customer.phone,
        "marketingState": state.upper(),
        "marketingOptInLevel": level,
        "marketingUpdatedAt": updated,
        "marketingCollectedFrom": collected,
        "smsMarketingConsent": {
            "state": CONSENT_STATE[state],
            "optInLevel": level,
            "updatedAt": updated,
            "collectedFrom": collected,
        },
        "whatsAppMarketingConsent": {
            "state": "NEVER_SUBSCRIBED",
            "optInLevel": None,
            "updatedAt": None,
            "collectedFrom": None,
        },
    }


def customer_node(customer: Customer) -> Node:
    email = customer.email_consent
    sms = customer.sms_consent if customer.phone else None
    default = customer.default_address
    return {
        "_model": customer,
        "id": gid("Customer", customer.id),
        "legacyResourceId": str(customer.id),
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "displayName": f"{customer.first_name} {customer.last_name}".strip() or (customer.email or ""),
        "defaultEmailAddress": _email_address(customer),
        "defaultPhoneNumber": _phone_number(customer),
        "email": customer.email,
        "phone": customer.phone,
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
            "marketingOptInLevel": _upper(sms.opt_in_level) or "UNKNOWN",
            "consentUpdatedAt": fmt_utc(sms.consent_updated_at),
            "consentCollectedFrom": sms.consent_collected_from,
        },
        "tags": list(customer.tags),
        "state": customer.state.upper(),
        "verifiedEmail": customer.verified_email,
        "note": customer.note,
        "numberOfOrders": str(customer.orders_count),
        "amountSpent": money_v2(customer.total_spent_cents, customer.currency),
        "locale": "sv",
        "taxExempt": customer.tax_exempt,
        "createdAt": fmt_utc(customer.created_at),
        "updatedAt": fmt_utc(customer.updated_at),
        "defaultAddress": None if default is None else address_node(default),
    }


def line_item_node(item: LineItem, currency: str) -> Node:
    unit = money_bag(item.price_cents, currency)
    total = money_bag(item.price_cents * item.quantity, currency)
    return {
        "_model": item,
        "id": gid("LineItem", item.id),
        "name": f"{item.title} - {item.variant_title}" if item.variant_title else item.title,
        "title": item.title,
        "variantTitle": item.variant_title or None,
        "sku": item.sku,
        "vendor": item.vendor,
        "quantity": item.quantity,
        "currentQuantity": item.quantity,
        "originalUnitPriceSet": unit,
        "discountedUnitPriceSet": unit,
        "originalTotalSet": total,
        "discountedTotalSet": total,
    }


def order_node(order: Order) -> Node:
    cur = order.currency
    return {
        "_model": order,
        "id": gid("Order", order.id),
        "legacyResourceId": str(order.id),
        "name": order.name,
        "number": order.number,
        "email": order.email,
        "phone": order.phone,
        "createdAt": fmt_utc(order.created_at),
        "updatedAt": fmt_utc(order.updated_at),
        "processedAt": fmt_utc(order.processed_at),
        "closedAt": fmt_utc(order.closed_at),
        "cancelledAt": fmt_utc(order.cancelled_at),
        "cancelReason": _upper(order.cancel_reason),
        "closed": order.closed_at is not None,
        "test": False,
        "displayFinancialStatus": order.financial_status.upper(),
        "displayFulfillmentStatus": FULFILLMENT.get(order.fulfillment_status, "UNFULFILLED"),
        "currencyCode": cur,
        "customerAcceptsMarketing": order.buyer_accepts_marketing,
        "discountCodes": [code.code for code in order.discount_codes],
        "tags": [],
        "note": None,
        "subtotalPriceSet": money_bag(order.subtotal_cents, cur),
        "totalPriceSet": money_bag(order.total_cents, cur),
        "totalTaxSet": money_bag(order.tax_cents, cur),
        "totalShippingPriceSet": money_bag(order.shipping_cents, cur),
        "totalDiscountsSet": money_bag(order.discount_cents, cur),
        "shippingAddress": None
        if order.shipping_address is None
        else address_node(order.shipping_address, "Address"),
        "billingAddress": None
        if order.billing_address is None
        else address_node(order.billing_address, "Address"),
    }


def product_node(product: Product) -> Node:
    image = product.images[0] if product.images else None
    image_node = (
        None
        if image is None
        else {
            "id": gid("ImageSource", image.id),
            "url": image.src,
            "altText": image.alt,
            "width": image.width,
            "height": image.height,
        }
    )
    return {
        "_model": product,
        "id": gid("Product", product.id),
        "legacyResourceId": str(product.id),
        "title": product.title,
        "handle": product.handle,
        "vendor": product.vendor,
        "productType": product.product_type,
        "tags": list(product.tags),
        "status": product.status.upper(),
        "createdAt": fmt_utc(product.created_at),
        "updatedAt": fmt_utc(product.updated_at),
        "publishedAt": fmt_utc(product.published_at),
        "descriptionHtml": product.body_html,
        "onlineStoreUrl": None,
        "featuredMedia": None
        if image is None
        else {
            "id": gid("MediaImage", image.id),
            "alt": image.alt,
            "mediaContentType": "IMAGE",
            "preview": {"image": image_node, "status": "READY"},
            "image": image_node,
        },
    }


def variant_node(variant: Variant, product: Product) -> Node:
    return {
        "_model": variant,
        "_product": product,
        "id": gid("ProductVariant", variant.id),
        "legacyResourceId": str(variant.id),
        "title": variant.title,
        "displayName": f"{product.title} - {variant.title}",
        "sku": variant.sku,
        "price": money(variant.price_cents),
        "compareAtPrice": None if variant.compare_at_cents is None else money(variant.compare_at_cents),
        "position": variant.position,
        "inventoryQuantity": variant.inventory_quantity,
        "createdAt": fmt_utc(product.created_at),
        "updatedAt": fmt_utc(product.updated_at),
    }


def topic_enum(topic: str) -> str:
    """`customers_email_marketing_consent/update` -> `CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE`."""
    return topic.replace("/", "_").replace(".", "_").upper()


def subscription_node(sub: Subscription) -> Node:
    return {
        "id": gid("WebhookSubscription", sub.id),
        "legacyResourceId": str(sub.id),
        "topic": topic_enum(sub.topic),
        "uri": sub.address,
        "callbackUrl": sub.address,
        "format": "JSON",
        "includeFields": list(sub.fields),
        "filter": None,
        "name": None,
        "metafieldNamespaces": [],
        "apiVersion": {"handle": sub.api_version, "displayName": sub.api_version, "supported": True},
        "createdAt": fmt_utc(sub.created_at),
        "updatedAt": fmt_utc(sub.updated_at),
    }
