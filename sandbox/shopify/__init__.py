"""A faithful, fast simulator of a Shopify store (GraphQL Admin API, bulk operations, signed webhooks).

Start with `ShopifySandbox(Store(seed=1, size=1000))`; see `server.py`, `store.py` (mutations),
`app.py` (routes) and `control.py` (the `/_sandbox/` control API).
"""

from sandbox.shopify.activity import Activity
from sandbox.shopify.app import create_app
from sandbox.shopify.delivery import (
    LEGACY_RETRY_DELAYS,
    MODERN_RETRY_DELAYS,
    DeliveryConfig,
    DeliveryRecord,
    sign,
)
from sandbox.shopify.ratelimit import RateLimitConfig
from sandbox.shopify.serialize import serialize_customer, shopify_json
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import SandboxError, Store

__all__ = [
    "LEGACY_RETRY_DELAYS",
    "MODERN_RETRY_DELAYS",
    "Activity",
    "DeliveryConfig",
    "DeliveryRecord",
    "RateLimitConfig",
    "SandboxError",
    "ShopifySandbox",
    "Store",
    "create_app",
    "serialize_customer",
    "shopify_json",
    "sign",
]
