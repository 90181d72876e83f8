"""`shopsync check`, the Shopify GraphQL half: API versions in support, protected customer data.

- The version the client calls (`graphql_api_version`) past Shopify's support window, or within
  90 days of its end, is a warning line naming the newest stable version to move to
  (`worker.shopify_versions`). The webhook payload version (`api_version`) is read in every
  version from 2020-07 on and is not warned about here.
- One customer is read through the GraphQL Admin API with every field the sync reads: when
  Shopify refuses protected customer data (name, email, phone, address need Level 2 access),
  that is a problem line naming the refused fields and what to request; the sync would refuse
  every such customer rather than write it without them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Protocol

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from mappings.installation import Shop
from shopsync.installcheck_auth import check_tokens
from worker.errors import ApiError
from worker.ratelimit import RateLimiter
from worker.retry import RetryPolicy
from worker.shopify_client import ShopifyClient
from worker.shopify_errors import AccessDeniedError, ProtectedDataError
from worker.shopify_versions import version_warning

PROTECTED_DATA_DOC = "https://shopify.dev/docs/apps/launch/protected-customer-data"


class ReportLines(Protocol):
    checked: list[str]
    problems: list[str]
    warnings: list[str]


def version_lines(shop: Shop, today: date) -> list[str]:
    """A warning when the GraphQL version is out of (or leaving) Shopify's support window."""
    warning = version_warning(shop.graphql_api_version, today, what="graphql_api_version")
    return [] if warning is None else [f"Shopify: {warning}"]


async def check_customer_access(client: Any, report: ReportLines) -> None:
    """Read one customer with the sync's fields; a refusal of protected data is a problem line."""
    try:
        await client.customer_page(None, limit=1)
    except ProtectedDataError as exc:
        report.problems.append(
            f"Shopify: protected customer data refused ({', '.join(exc.fields)}): the app needs"
            f" Level 2 access to customer name, email, phone and address (request it under"
            f" Protected customer data access in the app's dashboard, {PROTECTED_DATA_DOC})"
        )
    except AccessDeniedError as exc:
        report.problems.append(f"Shopify: customers cannot be read through GraphQL ({exc.detail})")
    except ApiError as exc:
        report.problems.append(f"Shopify: cannot read customers through GraphQL ({exc})")
    else:
        report.checked.append(
            "Shopify: customers readable through GraphQL with name, email, phone and address"
        )


async def check_graphql(
    shop: Shop, redis: aioredis.Redis, keys: Keys, report: ReportLines, *, today: date | None = None
) -> None:
    """The Shopify GraphQL checks of `shopsync check` (version warnings, protected data)."""
    report.warnings.extend(version_lines(shop, today or datetime.now(UTC).date()))
    if any(line.startswith("Shopify:") for line in report.problems):
        return  # no token, or credentials or scopes refused: already said, one line each
    async with aiohttp.ClientSession() as session:
        limiter = RateLimiter(redis, keys, max_wait_s=10.0)
        tokens = check_tokens(shop, redis, keys, session)
        retry = RetryPolicy(max_attempts=2, base_delay_s=0.2, max_delay_s=1.0, budget_s=10.0)
        async with ShopifyClient(
            shop, redis, limiter, keys, session, retry=retry, max_wait_s=10.0, tokens=tokens
        ) as client:
            await check_customer_access(client, report)
