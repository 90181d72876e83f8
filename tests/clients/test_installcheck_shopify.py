"""`shopsync check`'s GraphQL half against the sandbox store: protected customer data refused is
one problem line naming the fields; full access is a checked line; old versions are warned of."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import date

import aiohttp
import pytest
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Limits, Shop
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.installcheck_shopify import check_graphql, version_lines
from tests.clients.conftest import make_account


@dataclass
class Lines:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[ShopifySandbox, Shop]]:
    store = Store(size=5)
    async with ShopifySandbox(store) as sb:
        shop = Shop(
            domain=store.domain,
            admin_url=sb.url,
            api_version="2024-10",
            access_token=store.access_token,
            webhook_secret="unused",
            apsis=make_account(),
            sections=(),
            limits=Limits(),
        )
        yield sb, shop


async def _protected_level(sb: ShopifySandbox, level: int) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"graphql": {"protected_customer_data": level}}
        async with session.post(f"{sb.url}/_sandbox/config", json=body) as resp:
            assert resp.status < 300


async def test_full_access_is_checked(sandbox: tuple[ShopifySandbox, Shop], redis: Redis, keys: Keys) -> None:
    _, shop = sandbox
    lines = Lines()
    await check_graphql(shop, redis, keys, lines, today=date(2026, 12, 6))
    assert lines.problems == [] and lines.warnings == []
    assert lines.checked == [
        "Shopify: customers readable through GraphQL with name, email, phone and address"
    ]


async def test_refused_protected_data_is_one_problem_line(
    sandbox: tuple[ShopifySandbox, Shop], redis: Redis, keys: Keys
) -> None:
    sb, shop = sandbox
    await _protected_level(sb, 1)
    lines = Lines()
    await check_graphql(shop, redis, keys, lines, today=date(2026, 12, 6))
    [problem] = lines.problems
    assert problem.startswith("Shopify: protected customer data refused (")
    assert "defaultEmailAddress" in problem and "Level 2" in problem
    assert lines.checked == []


async def test_an_earlier_shopify_problem_skips_the_read(
    sandbox: tuple[ShopifySandbox, Shop], redis: Redis, keys: Keys
) -> None:
    _, shop = sandbox
    lines = Lines(problems=["Shopify: the access token is refused (401)"])
    await check_graphql(shop, redis, keys, lines, today=date(2026, 12, 6))
    assert lines.problems == ["Shopify: the access token is refused (401)"] and lines.checked == []


def test_an_old_graphql_version_is_warned_of() -> None:
    shop = Shop(
        domain="x.myshopify.com",
        admin_url="http://x",
        api_version="2020-07",  # payload versions are all read: no warning for it
        access_token="t",
        webhook_secret="w",
        apsis=make_account(),
        sections=(),
    )
    assert version_lines(shop, date(2026, 12, 6)) == []
    [line] = version_lines(replace(shop, graphql_api_version="2025-07"), date(2026, 12, 6))
    assert "graphql_api_version 2025-07 is past Shopify's support window" in line and line.endswith("2026-10")
