"""`shopsync check` and `shopsync install`: an installation against the real APIs.

`check` asks Shopify and APSIS One whether the installation can work and answers with one line
per problem, each saying what to fix, and a warning line for what is accepted but ignored. The
APSIS half (Consent 2.0 included) is `shopsync.installcheck_apsis`. `install` registers the
webhook subscriptions the installation needs (idempotent), then checks.

Which topics: every topic of `core.jobs.TOPIC_JOBS` that the shop's API version offers,
except the mandatory privacy topics (`customers/data_request`, `customers/redact`,
`shop/redact`): Shopify does not let an app create those through the API; a public app sets
their URL in the Partner Dashboard (or `shopify.app.toml`), and private or custom apps of one
store do not receive them. The receiver handles them when they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.jobs import PRIVACY_TOPICS, TOPIC_JOBS
from core.keys import Keys
from mappings.installation import Shop
from shopsync.installcheck_apsis import check_apsis, unreachable
from worker.apsis_client import ApsisClient
from worker.errors import ApiError, AuthError
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy
from worker.shopify_client import ShopifyClient

REQUIRED_SCOPES = ("read_customers", "read_orders", "read_products")
SCOPE_RESOURCES = {"read_customers": "Customers", "read_orders": "Orders", "read_products": "Products"}
# Topics newer than the oldest supported API version (2020-07): the release that introduced them.
TOPIC_SINCE: Mapping[str, str] = {
    "customers_marketing_consent/update": "2021-10",
    "customers_email_marketing_consent/update": "2022-04",
    "customer.tags_added": "2023-07",
    "customer.tags_removed": "2023-07",
}
# A check is interactive: fail fast rather than retry for the workers' 30 s budget.
CHECK_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.2, max_delay_s=1.0, budget_s=10.0)

Json = dict[str, Any]


def needed_topics(api_version: str) -> list[str]:
    """The webhook topics an installation on `api_version` subscribes to, sorted."""
    return sorted(
        topic
        for topic in set(TOPIC_JOBS)
        if topic not in PRIVACY_TOPICS and api_version >= TOPIC_SINCE.get(topic, "")
    )


@dataclass
class Report:
    """Outcome of a check: what was verified and the problems, one line each."""

    domain: str
    address: str | None
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # accepted, but worth changing: not a failure

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> Json:
        return {
            "shop": self.domain,
            "address": self.address,
            "ok": self.ok,
            "checked": self.checked,
            "problems": self.problems,
            "warnings": self.warnings,
        }


@dataclass
class InstallResult:
    kept: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # topics whose subscription pointed elsewhere
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "kept": self.kept,
            "created": self.created,
            "replaced": self.replaced,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class WebhookPlan:
    keep: list[str]
    create: list[str]
    delete: list[tuple[str, int]]  # (topic, subscription id) of stale subscriptions


def plan_webhooks(existing: Sequence[Mapping[str, Any]], topics: Iterable[str], address: str) -> WebhookPlan:
    """Pure: which subscriptions to keep, create, and delete so each topic points at `address`.

    An app's token lists only that app's subscriptions, so a needed topic subscribed at another
    address is this installation's, left over from an earlier address: replace it."""
    keep: list[str] = []
    create: list[str] = []
    delete: list[tuple[str, int]] = []
    for topic in topics:
        subs = [s for s in existing if s.get("topic") == topic]
        if any(s.get("address") == address for s in subs):
            keep.append(topic)
        else:
            create.append(topic)
        delete.extend((topic, int(s["id"])) for s in subs if s.get("address") != address)
    return WebhookPlan(keep, create, delete)


# --- clients ----------------------------------------------------------------------------------


@dataclass
class Clients:
    shopify: ShopifyClient
    apsis: ApsisClient

    @classmethod
    def build(cls, shop: Shop, redis: aioredis.Redis, keys: Keys) -> Clients:
        limiter = RateLimiter(redis, keys, max_wait_s=10.0)
        return cls(
            shopify=ShopifyClient(shop, redis, limiter, keys, retry=CHECK_RETRY, max_wait_s=10.0),
            apsis=ApsisClient(
                shop.apsis, redis, limiter, keys, limits=shop.limits, retry=CHECK_RETRY, max_wait_s=10.0
            ),
        )

    async def close(self) -> None:
        await self.shopify.close()
        await self.apsis.close()


# --- check ------------------------------------------------------------------------------------


async def check(shop: Shop, clients: Clients, address: str | None = None) -> Report:
    report = Report(shop.domain, address)
    shopify_part, apsis_part = await asyncio.gather(
        check_shopify(shop, clients.shopify, address), check_apsis(shop, clients.apsis)
    )
    for part in (shopify_part, apsis_part):
        report.checked.extend(part.checked)
        report.problems.extend(part.problems)
    report.warnings.extend(apsis_part.warnings)
    return report


async def check_shopify(shop: Shop, client: ShopifyClient, address: str | None) -> Report:
    r = Report(shop.domain, address)
    try:
        info = await client.shop()
    except AuthError as exc:
        r.problems.append(
            f"Shopify: the access token is refused ({exc.status}): set access_token of {shop.domain} to the"
            " app's Admin API access token (a private app's API password)"
        )
        return r
    except ApiError as exc:
        r.problems.append(unreachable("Shopify", shop.admin_url, exc))
        return r
    r.checked.append(f"Shopify: credentials work (shop {info.get('name', shop.domain)!s})")

    try:
        scopes = set(await client.access_scopes())
    except ApiError as exc:
        r.problems.append(f"Shopify: cannot read the access scopes ({exc})")
        scopes = set()
    else:
        # Write access implies read access, as at Shopify.
        granted = scopes | {"read_" + s[len("write_") :] for s in scopes if s.startswith("write_")}
        missing = [s for s in REQUIRED_SCOPES if s not in granted]
        for scope in missing:
            r.problems.append(
                f"Shopify: access scope {scope} is missing: give the app read access to"
                f" {SCOPE_RESOURCES[scope]} in its Admin API settings"
            )
        if not missing:
            r.checked.append(f"Shopify: access scopes include {', '.join(REQUIRED_SCOPES)}")

    try:
        subscriptions = await client.webhooks()
    except ApiError as exc:
        r.problems.append(f"Shopify: cannot list the webhook subscriptions ({exc})")
        return r
    topics = needed_topics(shop.api_version)
    fix = f"run shopsync install {shop.domain} --address {address or 'URL'}"
    missing_topics = []
    for topic in topics:
        addresses = [s.get("address") for s in subscriptions if s.get("topic") == topic]
        if address is not None and address not in addresses:
            where = f" (it points at {', '.join(map(str, addresses))})" if addresses else ""
            r.problems.append(f"Shopify: no webhook subscription for {topic} at {address}{where}: {fix}")
            missing_topics.append(topic)
        elif not addresses:
            r.problems.append(f"Shopify: no webhook subscription for {topic}: {fix}")
            missing_topics.append(topic)
    if not missing_topics:
        at = f" at {address}" if address else ""
        r.checked.append(f"Shopify: webhook subscriptions for {len(topics)} topics{at}")
    return r


# --- install ----------------------------------------------------------------------------------


async def install_webhooks(shop: Shop, client: ShopifyClient, address: str) -> InstallResult:
    """Subscribe every needed topic at `address`; keep what is there, replace stale addresses."""
    result = InstallResult()
    try:
        existing = await client.webhooks()
    except AuthError as exc:
        result.problems.append(
            f"Shopify: the access token is refused ({exc.status}): set access_token of {shop.domain} to the"
            " app's Admin API access token (a private app's API password)"
        )
        return result
    except ApiError as exc:
        result.problems.append(f"Shopify: cannot list the webhook subscriptions ({exc})")
        return result
    plan = plan_webhooks(existing, needed_topics(shop.api_version), address)
    result.kept = plan.keep
    stale_topics = {topic for topic, _ in plan.delete}
    failed: set[str] = set()
    for topic in plan.create:
        try:
            await client.create_webhook(topic, address)
        except ApiError as exc:
            result.problems.append(f"Shopify: cannot subscribe {topic} at {address}: {exc}")
            failed.add(topic)
            continue
        (result.replaced if topic in stale_topics else result.created).append(topic)
    for topic, sub_id in plan.delete:
        if topic in failed:
            continue  # keep the old subscription rather than none
        try:
            await client.delete_webhook(sub_id)
        except ApiError as exc:
            result.problems.append(
                f"Shopify: cannot delete the stale subscription {sub_id} of {topic}: {exc}"
            )
    return result


async def mark_installed(redis: aioredis.Redis, keys: Keys, domain: str) -> bool:
    """Forget an earlier app/uninstalled or shop/redact: the shop syncs again. True if it was marked."""
    return bool(await redis.srem(keys.uninstalled, domain))  # type: ignore[misc]
