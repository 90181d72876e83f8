"""GraphQL Admin API nodes -> the REST-shaped dicts the rest of the worker reads (pure).

The client speaks GraphQL (global ids, camelCase, enums in capitals); every caller keeps reading
what it always read: numeric ids (`legacyResourceId`), snake_case keys, lower-case states,
`tags` as REST's comma string, webhook topics as `customers/update`. One function per resource;
each takes one node as Shopify answered it and never does I/O. A key the node lacks is left out
of the result (unknown), a `null` stays `None` (known and empty), as `mappings.normalize` expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Json = dict[str, Any]

# Topics the service subscribes to, as REST names them; GraphQL's enum is their upper-case form
# with `/` and `.` turned to `_` (`customer.tags_added` -> `CUSTOMER_TAGS_ADDED`).
KNOWN_TOPICS = (
    "customers/create",
    "customers/update",
    "customers/delete",
    "customers/enable",
    "customers/disable",
    "customers_email_marketing_consent/update",
    "customers_marketing_consent/update",
    "customer.tags_added",
    "customer.tags_removed",
    "orders/create",
    "orders/paid",
    "orders/updated",
    "orders/cancelled",
    "app/uninstalled",
)


def topic_enum(topic: str) -> str:
    """`customers/update` -> `CUSTOMERS_UPDATE` (`WebhookSubscriptionTopic`)."""
    return topic.replace("/", "_").replace(".", "_").upper()


_TOPICS = {topic_enum(t): t for t in KNOWN_TOPICS}


def rest_topic(value: str) -> str:
    """`CUSTOMERS_UPDATE` -> `customers/update`; an unknown enum -> its last `_` made a `/`."""
    if value in _TOPICS:
        return _TOPICS[value]
    head, _, tail = value.lower().rpartition("_")
    return f"{head}/{tail}" if head else value.lower()


def gid(kind: str, number: int | str) -> str:
    """A numeric id as a global id: `gid("Customer", 7)` -> `gid://shopify/Customer/7`."""
    text = str(number)
    return text if text.startswith("gid://") else f"gid://shopify/{kind}/{text}"


def legacy_id(node: Mapping[str, Any]) -> int:
    """The numeric id of a node: `legacyResourceId`, else the tail of its global `id`."""
    value = node.get("legacyResourceId")
    if value is None:
        value = str(node.get("id") or "").rsplit("/", 1)[-1].split("?", 1)[0]
    return int(value)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _amount(bag: Any) -> str | None:
    """`{shopMoney: {amount}}` -> the amount (REST's money strings)."""
    if not isinstance(bag, Mapping):
        return None
    money = bag.get("shopMoney")
    return None if not isinstance(money, Mapping) else money.get("amount")


def _discount(original: Any, discounted: Any) -> str | None:
    """REST's `total_discount` of a line: its original total less its total after every discount."""
    before, after = _amount(original), _amount(discounted)
    if before is None or after is None:
        return None
    try:
        return str(Decimal(str(before)) - Decimal(str(after)))
    except InvalidOperation:
        return None


def _id_of(node: Any) -> int | None:
    return legacy_id(node) if isinstance(node, Mapping) else None


def rest_address(node: Mapping[str, Any] | None) -> Json | None:
    if node is None:
        return None
    names = {
        "firstName": "first_name",
        "lastName": "last_name",
        "provinceCode": "province_code",
        "countryCodeV2": "country_code",
    }
    return {names.get(k, k): v for k, v in node.items()}


def _email_consent(email: Mapping[str, Any] | None) -> Json | None:
    if email is None or email.get("marketingState") is None:
        return None
    return {
        "state": _lower(email.get("marketingState")),
        "opt_in_level": _lower(email.get("marketingOptInLevel")),
        "consent_updated_at": email.get("marketingUpdatedAt"),
    }


def _sms_consent(phone: Mapping[str, Any] | None) -> Json | None:
    if phone is None:
        return None
    consent = phone.get("smsMarketingConsent")
    if isinstance(consent, Mapping):  # 2026-10 on
        state, level = consent.get("state"), consent.get("optInLevel")
        when, source = consent.get("updatedAt"), consent.get("collectedFrom")
    else:  # the phone's own marketing fields before 2026-10
        state, level = phone.get("marketingState"), phone.get("marketingOptInLevel")
        when, source = phone.get("marketingUpdatedAt"), phone.get("marketingCollectedFrom")
    if state is None:
        return None
    return {
        "state": "not_subscribed" if state == "NEVER_SUBSCRIBED" else _lower(state),
        "opt_in_level": _lower(level),
        "consent_updated_at": when,
        "consent_collected_from": source,
    }


def rest_customer(node: Mapping[str, Any]) -> Json:
    """A `Customer` node (`CustomerFields`) as the REST customer of 2024-10 on."""
    out: Json = {"id": legacy_id(node), "admin_graphql_api_id": node.get("id")}
    simple = {
        "firstName": "first_name",
        "lastName": "last_name",
        "note": "note",
        "verifiedEmail": "verified_email",
        "taxExempt": "tax_exempt",
        "createdAt": "created_at",
        "updatedAt": "updated_at",
    }
    for src, dst in simple.items():
        if src in node:
            out[dst] = node[src]
    if "state" in node:
        out["state"] = _lower(node["state"])
    if "tags" in node:
        out["tags"] = ", ".join(node["tags"] or [])
    if "numberOfOrders" in node:
        count = node["numberOfOrders"]
        out["orders_count"] = int(count) if count is not None else None
    if "amountSpent" in node:
        money = node["amountSpent"] or {}
        out["total_spent"] = money.get("amount")
        out["currency"] = money.get("currencyCode")
    if "defaultAddress" in node:
        out["default_address"] = rest_address(node["defaultAddress"])
    if "defaultEmailAddress" in node:
        email = node["defaultEmailAddress"]
        out["email"] = email.get("emailAddress") if email else None
        out["email_marketing_consent"] = _email_consent(email)
    if "defaultPhoneNumber" in node:
        phone = node["defaultPhoneNumber"]
        out["phone"] = phone.get("phoneNumber") if phone else None
        out["sms_marketing_consent"] = _sms_consent(phone)
    return out


def rest_line_item(node: Mapping[str, Any]) -> Json:
    return {
        "id": legacy_id(node),
        "product_id": _id_of(node.get("product")),
        "variant_id": _id_of(node.get("variant")),
        "quantity": node.get("quantity"),
        "price": _amount(node.get("originalUnitPriceSet")),
        "total_discount": _discount(node.get("originalTotalSet"), node.get("discountedTotalSet")),
        "sku": node.get("sku"),
        "title": node.get("title"),
        "variant_title": node.get("variantTitle"),
        "vendor": node.get("vendor"),
    }


def rest_order(node: Mapping[str, Any], lines: Iterable[Mapping[str, Any]] | None = None) -> Json:
    """An `Order` node as the REST order the purchase events read. `lines` are its line item
    nodes when more than the first page of them was read."""
    if lines is None:
        lines = (node.get("lineItems") or {}).get("nodes") or []
    customer = node.get("customer")
    shipping = node.get("totalShippingPriceSet")
    shipping_money = (shipping or {}).get("shopMoney") if isinstance(shipping, Mapping) else None
    return {
        "id": legacy_id(node),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "order_number": node.get("number"),
        "email": node.get("email"),
        "created_at": node.get("createdAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "updated_at": node.get("updatedAt"),
        "currency": node.get("currencyCode"),
        "financial_status": _lower(node.get("displayFinancialStatus")),
        "discount_codes": [{"code": code} for code in node.get("discountCodes") or []],
        "customer": {"id": legacy_id(customer)} if isinstance(customer, Mapping) else None,
        "total_price": _amount(node.get("totalPriceSet")),
        "subtotal_price": _amount(node.get("subtotalPriceSet")),
        "total_discounts": _amount(node.get("totalDiscountsSet")),
        "total_tax": _amount(node.get("totalTaxSet")),
        "total_shipping_price_set": (
            {
                "shop_money": {
                    "amount": shipping_money.get("amount"),
                    "currency_code": shipping_money.get("currencyCode"),
                }
            }
            if isinstance(shipping_money, Mapping)
            else None
        ),
        "line_items": [rest_line_item(line) for line in lines],
    }


def rest_product(node: Mapping[str, Any]) -> Json:
    media = node.get("featuredMedia") or {}
    image = ((media.get("preview") or {}).get("image") or {}) if isinstance(media, Mapping) else {}
    url = image.get("url") if isinstance(image, Mapping) else None
    return {
        "id": legacy_id(node),
        "handle": node.get("handle"),
        "product_type": node.get("productType"),
        "vendor": node.get("vendor"),
        "updated_at": node.get("updatedAt"),
        "image": {"src": url} if url else None,
    }


def rest_webhook(node: Mapping[str, Any]) -> Json:
    version = node.get("apiVersion")
    return {
        "id": legacy_id(node),
        "admin_graphql_api_id": node.get("id"),
        "topic": rest_topic(str(node.get("topic") or "")),
        "address": node.get("uri"),
        "format": _lower(node.get("format")),
        "api_version": version.get("handle") if isinstance(version, Mapping) else None,
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }


def rest_shop(node: Mapping[str, Any]) -> Json:
    plan = node.get("plan") or {}
    return {
        "id": legacy_id(node),
        "name": node.get("name"),
        "email": node.get("email"),
        "myshopify_domain": node.get("myshopifyDomain"),
        "currency": node.get("currencyCode"),
        "iana_timezone": node.get("ianaTimezone"),
        "created_at": node.get("createdAt"),
        "plan_display_name": plan.get("publicDisplayName") if isinstance(plan, Mapping) else None,
        "plan_name": ("shopify_plus" if isinstance(plan, Mapping) and plan.get("shopifyPlus") else None),
    }
