"""The installations file's schema: the immutable, typed objects a parsed file becomes.

`Installations` holds one `Shop` per domain, each with its APSIS account, its sections (conditions,
attribute, consent and event mappings), its limits and its order and sync settings; plus the
constants the schema is checked against and `InstallationError`, the one-line mistake report.
Parsing and validating the file is `mappings.installation_parse`; reading it is `core.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

CONDITION_OPERATORS = frozenset(
    {"eq", "ne", "in", "not_in", "contains", "not_contains", "exists", "gt", "gte", "lt", "lte"}
)
CHANNELS: Mapping[str, str] = MappingProxyType(
    {"email": "com.apsis1.channels.email", "sms": "com.apsis1.channels.sms"}
)
ORDER_EVENT_TOPICS = ("orders/paid", "orders/create")
MIN_API_VERSION = "2020-07"


class InstallationError(ValueError):
    """A mistake in the installations file; `str()` is one line: file: key: reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class ConsentMapping:
    """The topics one section's consent on a channel goes to (Consent 2.0: per profile and topic).

    `consent_list` is what files written for Consent 1.0 name; it is kept for `check` and ignored
    otherwise (consent lists are folders in APSIS's UI, not part of the API any more).
    """

    channel: Literal["email", "sms"]
    topics: tuple[str, ...]
    consent_list: str | None = None

    @property
    def channel_discriminator(self) -> str:
        return CHANNELS[self.channel]


@dataclass(frozen=True, slots=True)
class EventMapping:
    order: str | None = None
    order_line: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    discriminator: str
    conditions: tuple[Condition, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    email: ConsentMapping | None = None
    sms: ConsentMapping | None = None
    events: EventMapping = field(default_factory=EventMapping)

    @property
    def consents(self) -> tuple[ConsentMapping, ...]:
        return tuple(c for c in (self.email, self.sms) if c is not None)


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate and concurrency limits; the defaults are the documented limits with a margin."""

    shopify_bucket_size: int = 40
    shopify_leak_per_s: float = 2.0
    shopify_concurrency: int = 8
    apsis_requests_per_s: float = 100.0
    apsis_profile_requests_per_s: float = 10.0
    # Of those, how many one profile may send back to back (worker/ratelimit/buckets.py): 1 if
    # APSIS answers 429 "rate limit exceeded for <profile key>" to a new customer's writes.
    apsis_profile_burst: int = 4
    apsis_concurrency: int = 32
    safety: float = 0.95  # share of each documented limit we allow ourselves


@dataclass(frozen=True, slots=True)
class ApsisAccount:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    keyspace: str


@dataclass(frozen=True, slots=True)
class OrderSettings:
    event_topic: Literal["orders/paid", "orders/create"] = "orders/paid"
    guests: Literal["skip", "email"] = "skip"


# A full sync of a store with more customers than this goes through APSIS profile imports.
DEFAULT_IMPORT_THRESHOLD = 5000


@dataclass(frozen=True, slots=True)
class SyncSettings:
    reconcile_interval_s: int = 3600
    bulk_export: bool = False
    weight: int = 1  # the shop's share of the pool's full-sync batch slots (worker/fullsync/dispatch.py)
    # A full sync of a store with more customers than this goes through APSIS profile imports
    # (worker/fullsync/imports.py); at or below it, one profile at a time. 0: never through imports.
    import_threshold: int = DEFAULT_IMPORT_THRESHOLD
    # A drift audit every this many seconds in the worker pool (worker/audit_schedule.py); None: none.
    audit_interval_s: int | None = None
    # A scheduled audit enqueues the fixes it finds (worker/audit_repair.py); off unless set.
    audit_repair: bool = False


AUTH_MODES = ("static", "client_credentials", "oauth")
# The scopes the sync needs (customers, orders for purchase events, products for order lines).
DEFAULT_SCOPES = ("read_customers", "read_orders", "read_products")
# The GraphQL Admin API version the client calls (newest stable in December 2026); the webhook
# payload version (`api_version`) is separate and may be any from 2020-07 on.
DEFAULT_GRAPHQL_VERSION = "2026-10"


@dataclass(frozen=True, slots=True)
class ShopAuth:
    """How the service gets a Shopify access token for the shop.

    `static`: the shop's `access_token` (an existing admin-created custom app or private app).
    `client_credentials`: minted from the app's client id and secret (a Dev Dashboard app of the
    merchant's own organization), 24 h, minted again ahead of expiry.
    `oauth`: the authorization code grant with expiring offline tokens and a rotating refresh token
    (an app installed through `/auth/install`).
    """

    mode: Literal["static", "client_credentials", "oauth"] = "static"
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES


def requested_scopes(auth: ShopAuth) -> list[str]:
    """The access scopes an app asks for: what the sync needs plus the installation's `auth.scopes`."""
    return list(dict.fromkeys((*DEFAULT_SCOPES, *auth.scopes)))


@dataclass(frozen=True, slots=True)
class Shop:
    domain: str
    admin_url: str
    api_version: str
    access_token: str = field(repr=False)  # "" unless auth.mode == "static"
    webhook_secret: str = field(repr=False)  # the app's client secret for Dev Dashboard apps
    apsis: ApsisAccount
    sections: tuple[Section, ...]
    limits: Limits = field(default_factory=Limits)
    orders: OrderSettings = field(default_factory=OrderSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    auth: ShopAuth = field(default_factory=ShopAuth)
    graphql_api_version: str = DEFAULT_GRAPHQL_VERSION


@dataclass(frozen=True, slots=True)
class Installations:
    source: str
    shops: Mapping[str, Shop]
    # One line each (file: key: reason) for keys that are accepted but ignored; the processes log them.
    warnings: tuple[str, ...] = ()

    def get(self, domain: str) -> Shop | None:
        return self.shops.get(domain.strip().lower())
