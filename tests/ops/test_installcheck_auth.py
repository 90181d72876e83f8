"""`shopsync check`, the auth half: a token can be had in the shop's `[shop.auth]` mode and carries
the scopes the sync needs; each problem is one line saying what to fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import TokenCipher, TokenRecord, TokenStore, client_credentials
from sandbox.apsis.server import ApsisSandbox
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.shops import load_installations
from tests.ops.helpers import cli_env, run_cli, sandbox_document, write_shops_file

DOMAIN = "demo-store.myshopify.com"
CLIENT_ID = "sandbox-client-id"
SECRET = "sandbox-webhook-secret"  # the sandbox app's client secret
KEY = TokenCipher.generate_key()


@dataclass
class Setup:
    shopify: ShopifySandbox
    apsis: ApsisSandbox
    tmp: Path
    redis_url: str
    keys: Keys

    def env(self, mode: str, secret: str = SECRET, key: str | None = KEY) -> dict[str, str]:
        document = sandbox_document(self.shopify.url, self.apsis.url)
        shop = document["shop"][0]
        shop.pop("access_token")
        shop["auth"] = {"mode": mode, "client_id": CLIENT_ID, "client_secret": secret}
        shop["webhook_secret"] = SECRET
        path = write_shops_file(self.tmp / "shops.toml", document)
        env = cli_env(self.redis_url, self.keys, path)
        env.pop("SHOPSYNC_TOKEN_KEY", None)
        if key:
            env["SHOPSYNC_TOKEN_KEY"] = key
        return env

    async def check(self, env: dict[str, str]) -> dict[str, Any]:
        done = await run_cli(["check", DOMAIN, "--json"], env)
        assert done.code in (0, 1), done.stderr
        assert done.stdout, done.stderr
        report: dict[str, Any] = orjson.loads(done.stdout)
        return report


@pytest.fixture
async def setup(tmp_path: Path, redis_url: str, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Setup]:
    async with ApsisSandbox() as apsis, ShopifySandbox(Store(size=3)) as shopify:
        yield Setup(shopify, apsis, tmp_path, redis_url, keys)


async def test_client_credentials_mints_a_token_with_the_scopes(setup: Setup) -> None:
    report = await setup.check(setup.env("client_credentials"))
    assert "Shopify: the client credentials grant answers with a token" in report["checked"]
    assert (
        "Shopify: the token's scopes include read_customers, read_orders, read_products" in report["checked"]
    )
    assert not [p for p in report["problems"] if "grant" in p or "scopes" in p or "TOKEN_KEY" in p]


async def test_client_credentials_refused_or_missing_scope(setup: Setup) -> None:
    report = await setup.check(setup.env("client_credentials", secret="wrong-secret"))
    assert report["problems"][0].startswith(
        "Shopify: the client credentials grant is refused (401 invalid_client): set [shop.auth] client_id"
    )
    assert [p for p in report["problems"] if p.startswith("Shopify")] == report["problems"][:1]

    setup.shopify.store.scopes.discard("read_orders")
    report = await setup.check(setup.env("client_credentials"))
    assert report["problems"][0].startswith(
        "Shopify: the app's token lacks read_orders: add it to [access_scopes]"
    )


async def test_oauth_needs_approval_until_a_pair_is_stored(setup: Setup, redis: aioredis.Redis) -> None:
    env = setup.env("oauth")
    report = await setup.check(env)
    assert report["problems"][0] == (
        f"Shopify: {DOMAIN} is not connected yet (needs approval): open /auth/install?shop={DOMAIN}"
        " on the receiver and approve the app"
    )
    store = TokenStore(redis, setup.keys, TokenCipher(KEY))
    await store.mark_needs_approval(DOMAIN, "refresh refused: invalid_grant")
    report = await setup.check(env)
    assert report["problems"][0].startswith(
        f"Shopify: {DOMAIN} needs approval (refresh refused: invalid_grant)"
    )

    # A pair Shopify accepts (the sandbox mints one; an installation's callback would store it).
    shop = load_installations(env["SHOPS_FILE"], env).shops[DOMAIN]
    async with aiohttp.ClientSession() as session:
        minted = await client_credentials.mint(session, shop)
    await store.put(DOMAIN, TokenRecord(minted.access_token, None, "shprt_x", None, minted.scope))
    report = await setup.check(env)
    assert "Shopify: a token pair is stored (authorization code grant)" in report["checked"]
    assert not [p for p in report["problems"] if "approval" in p or "lacks" in p]

    # A stored token Shopify no longer takes, whose refresh is refused: needs approval, said once.
    await store.put(DOMAIN, TokenRecord("shpat_revoked", None, "shprt_x", None, minted.scope))
    report = await setup.check(env)
    assert [p for p in report["problems"] if "needs approval" in p]


async def test_minted_modes_need_the_token_key(setup: Setup) -> None:
    for mode in ("client_credentials", "oauth"):
        report = await setup.check(setup.env(mode, key=None))
        assert report["problems"][0].startswith("Shopify: SHOPSYNC_TOKEN_KEY is not set (or not a key)"), mode
