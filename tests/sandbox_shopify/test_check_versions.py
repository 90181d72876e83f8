"""`shopsync check`'s Shopify GraphQL half (`check_graphql`) against the sandbox: an installation
whose GraphQL version is past Shopify's support window (or within 90 days of its end) gets one
warning naming the version to move to, and the customer read still runs; a supported one gets none."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from redis.asyncio import Redis

from core.keys import Keys
from sandbox.shopify import ShopifySandbox, Store
from shopsync.installcheck_shopify import check_graphql
from tests.clients.conftest import keys, make_shop, redis  # noqa: F401  (fixtures)

TODAY = date(2026, 12, 6)


@dataclass
class Lines:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def test_a_version_past_support_is_warned_of_with_the_one_to_move_to(
    redis: Redis,  # noqa: F811
    keys: Keys,  # noqa: F811
) -> None:
    store = Store(size=5)
    async with ShopifySandbox(store) as sandbox:
        shop = replace(make_shop(sandbox.url), domain=store.domain, access_token=store.access_token)
        cases = (
            ("2025-07", "is past Shopify's support window"),
            ("2026-01", "leaves Shopify's support window on 2027-01-01"),  # within 90 days
            ("2026-04", None),
            ("2026-10", None),
        )
        for version, warned in cases:
            lines = Lines()
            await check_graphql(replace(shop, graphql_api_version=version), redis, keys, lines, today=TODAY)
            assert lines.problems == [], version
            assert lines.checked == [
                "Shopify: customers readable through GraphQL with name, email, phone and address"
            ]
            if warned:
                [warning] = lines.warnings
                assert warning.startswith(f"Shopify: graphql_api_version {version} {warned}")
                assert warning.endswith("move to 2026-10")
            else:
                assert lines.warnings == [], version
