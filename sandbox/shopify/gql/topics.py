"""Webhook topics the store delivers, and the access scope a subscription to each needs (None: none)."""

from __future__ import annotations

TOPIC_SCOPES: dict[str, str | None] = {
    "customers/create": "read_customers",
    "customers/update": "read_customers",
    "customers/delete": "read_customers",
    "customers/enable": "read_customers",
    "customers/disable": "read_customers",
    "customers_email_marketing_consent/update": "read_customers",
    "customers_marketing_consent/update": "read_customers",
    "customer.tags_added": "read_customers",
    "customer.tags_removed": "read_customers",
    "orders/create": "read_orders",
    "orders/paid": "read_orders",
    "orders/updated": "read_orders",
    "orders/cancelled": "read_orders",
    "products/create": "read_products",
    "products/update": "read_products",
    "products/delete": "read_products",
    "app/uninstalled": None,
    "shop/update": None,
    "customers/data_request": None,
    "customers/redact": None,
    "shop/redact": None,
}
# Topics whose payloads carry protected customer data (Level 1 needed to subscribe).
PROTECTED_TOPICS = frozenset(
    t for t, scope in TOPIC_SCOPES.items() if scope in ("read_customers", "read_orders")
)


def topic_of_enum(value: str) -> str | None:
    """`CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE` -> `customers_email_marketing_consent/update`."""
    for topic in TOPIC_SCOPES:
        if topic.replace("/", "_").replace(".", "_").upper() == value:
            return topic
    return None
