"""`shopsync check` and `shopsync install`: an installation against the real APIs.

`check` asks Shopify and APSIS One whether the installation can work and answers with one line
per problem, each saying what to fix, and a warning line for what is accepted but ignored. The
APSIS half (Consent 2.0 included) is `shopsync.installcheck_apsis`. `install` registers the
webhook subscriptions the installation needs (idempotent), then checks.

Which topics, and registering them: `worker.install` (shared with the worker's `install_shop`
job): every topic of `core.jobs.TOPIC_JOBS` that the shop's API version offers, except the
mandatory privacy topics (`customers/data_request`, `customers/redact`, `shop/redact`), which an
app declares in its configuration (`shopsync app-config`) rather than through the API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import NeedsApprovalError
from mappings.installation import Shop
from shopsync import installcheck_shopify
from shopsync.installcheck_apsis import check_apsis, unreachable
from shopsync.installcheck_auth import check_auth, check_tokens
from worker.apsis_client import ApsisClient
from worker.errors import ApiError, AuthError
from worker.install import InstallResult as InstallResult  # the webhook half, shared with the
from worker.install import WebhookPlan as WebhookPlan  # worker's install_shop job
from worker.install import install_webhooks as install_webhooks
from worker.install import needed_topics as needed_topics
from worker.install import plan_webhooks as plan_webhooks
from worker.install import refused_token
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy
from worker.shopify_client import ShopifyClient

REQUIRED_SCOPES = ("read_customers", "read_orders", "read_products")
SCOPE_RESOURCES = {"read_customers": "Customers", "read_orders": "Orders", "read_products": "Products"}
# A check is interactive: fail fast rather than retry for the workers' 30 s budget.
CHECK_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.2, max_delay_s=1.0, budget_s=10.0)

Json = dict[str, Any]


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


# --- clients ----------------------------------------------------------------------------------


@dataclass
class Clients:
    shopify: ShopifyClient
    apsis: ApsisClient
    token_session: aiohttp.ClientSession | None = None  # the token endpoint's (minted modes)

    @classmethod
    def build(cls, shop: Shop, redis: aioredis.Redis, keys: Keys) -> Clients:
        limiter = RateLimiter(redis, keys, max_wait_s=10.0)
        session = aiohttp.ClientSession()
        tokens = check_tokens(shop, redis, keys, session)
        return cls(
            shopify=ShopifyClient(
                shop, redis, limiter, keys, retry=CHECK_RETRY, max_wait_s=10.0, tokens=tokens
            ),
            apsis=ApsisClient(
                shop.apsis, redis, limiter, keys, limits=shop.limits, retry=CHECK_RETRY, max_wait_s=10.0
            ),
            token_session=session,
        )

    async def close(self) -> None:
        await self.shopify.close()
        await self.apsis.close()
        if self.token_session is not None:
            await self.token_session.close()


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
    await installcheck_shopify.check_graphql(shop, clients.shopify.redis, clients.shopify.keys, report)
    return report


async def check_shopify(shop: Shop, client: ShopifyClient, address: str | None) -> Report:
    r = Report(shop.domain, address)
    if not await check_auth(shop, client, r):  # a token can be had, with the scopes (installcheck_auth)
        return r
    try:
        info = await client.shop()
    except NeedsApprovalError as exc:
        r.problems.append(
            f"Shopify: {shop.domain} needs approval ({exc.reason}): open /auth/install?shop={shop.domain}"
            " on the receiver and approve the app"
        )
        return r
    except AuthError as exc:
        r.problems.append(refused_token(shop, exc.status))
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


async def mark_installed(redis: aioredis.Redis, keys: Keys, domain: str) -> bool:
    """Forget an earlier app/uninstalled or shop/redact: the shop syncs again. True if it was marked."""
    return bool(await redis.srem(keys.uninstalled, domain))  # type: ignore[misc]
