"""MintedTokens against the sandbox over HTTP and a real Redis: one renewal at a time, ahead of
expiry, once per 401, and "needs approval" when Shopify refuses."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import (
    MintedTokens,
    NeedsApprovalError,
    StaticToken,
    TokenCipher,
    TokenKeyError,
    TokenStore,
    authorization_code,
    token_source,
)
from sandbox.shopify import ShopifySandbox
from sandbox.shopify.oauth import TokenAuthority
from tests.shopify_auth.conftest import Clock, FakeShop, shop_for
from tests.shopify_auth.test_grants import approve


def pool(
    shop: FakeShop,
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    clock: Clock,
    n: int,
) -> list[MintedTokens]:
    """`n` token sources as `n` processes of the pool would hold them."""
    return [
        MintedTokens(shop, redis, keys, cipher, session, clock=clock, holder=f"p{i}", poll_s=0.02)
        for i in range(n)
    ]


async def test_concurrent_token_calls_mint_once(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    sources = pool(shop_for(sandbox, "client_credentials"), redis, keys, cipher, session, clock, 6)
    tokens = await asyncio.gather(*(s.token() for s in sources for _ in range(3)))
    assert len(set(tokens)) == 1
    assert authority.counters["client_credentials"] == 1
    stored = await TokenStore(redis, keys, cipher).get(sandbox.store.domain)
    assert stored is not None and stored.access_token == tokens[0]


async def test_renewed_ahead_of_expiry_once(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    sources = pool(shop_for(sandbox, "client_credentials"), redis, keys, cipher, session, clock, 4)
    first = await sources[0].token()
    clock.offset = 86_400 - 400  # more than 5 minutes left: kept
    assert {await s.token() for s in sources} == {first}
    clock.offset = 86_400 - 200  # less than 5 minutes left: renewed, by one of them
    seen = await asyncio.gather(*(s.token() for s in sources))
    assert authority.counters["client_credentials"] == 2
    # The others went on with the still valid token meanwhile; from now on all use the new one.
    assert set(seen) <= {first, renewed := await sources[0].token()} and renewed != first
    assert {await s.token() for s in sources} == {renewed}


async def test_invalidate_renews_once(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    sources = pool(shop_for(sandbox, "client_credentials"), redis, keys, cipher, session, clock, 5)
    rejected = await sources[0].token()
    await asyncio.gather(*(s.invalidate(rejected) for s in sources))  # five 401s at once
    assert authority.counters["client_credentials"] == 2
    fresh = await sources[1].token()
    assert fresh != rejected
    await sources[2].invalidate(rejected)  # a late 401 of the old token: nothing to do
    assert authority.counters["client_credentials"] == 2
    assert await sources[3].token() == fresh


async def test_oauth_refreshes_and_invalid_grant_needs_approval(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    shop = shop_for(sandbox, "oauth")
    store = TokenStore(redis, keys, cipher)
    query = await approve(session, sandbox)
    await store.put(shop.domain, await authorization_code.exchange(session, shop, query["code"]))
    sources = pool(shop, redis, keys, cipher, session, clock, 3)
    first = await sources[0].token()
    clock.offset = 3_600 - 100
    await asyncio.gather(*(s.token() for s in sources))
    assert authority.counters["refresh_token"] == 1
    refreshed = [await s.token() for s in sources]
    assert len(set(refreshed)) == 1 and refreshed[0] != first

    authority.revoke_all()  # the merchant uninstalled: the refresh token is refused
    clock.offset = 2 * 3_600
    with pytest.raises(NeedsApprovalError, match="invalid_grant"):
        await sources[1].token()
    assert "invalid_grant" in (await store.needs_approval(shop.domain) or "")
    grants = dict(authority.counters)
    with pytest.raises(NeedsApprovalError):  # held without asking Shopify again
        await sources[2].token()
    assert dict(authority.counters) == grants

    query = await approve(session, sandbox, state="s2")  # approved again: connected
    await store.put(shop.domain, await authorization_code.exchange(session, shop, query["code"]))
    assert await store.needs_approval(shop.domain) is None
    assert await sources[2].token() != refreshed[0]


async def test_oauth_without_a_stored_pair_needs_approval(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    (source,) = pool(shop_for(sandbox, "oauth"), redis, keys, cipher, session, clock, 1)
    with pytest.raises(NeedsApprovalError, match="not connected"):
        await source.token()
    assert sum(authority.counters.values()) == 0


async def test_client_credentials_refused_then_reconnected(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
    authority: TokenAuthority,
    clock: Clock,
) -> None:
    authority.config.client_id = "rotated"  # the app's credentials no longer match
    (source,) = pool(shop_for(sandbox, "client_credentials"), redis, keys, cipher, session, clock, 1)
    with pytest.raises(NeedsApprovalError, match="invalid_client"):
        await source.token()
    assert not await source.reconnect()
    authority.config.client_id = "sandbox-client-id"
    assert await source.reconnect()
    assert await TokenStore(redis, keys, cipher).needs_approval(sandbox.store.domain) is None
    assert await source.token()


async def test_token_source_by_mode(
    redis: aioredis.Redis,
    keys: Keys,
    cipher: TokenCipher,
    session: aiohttp.ClientSession,
    sandbox: ShopifySandbox,
) -> None:
    static = FakeShop(
        "s.myshopify.com", sandbox.url, shop_for(sandbox, "static").auth, access_token="shpat_x"
    )
    source = token_source(static, redis, keys, None, session)
    assert isinstance(source, StaticToken) and await source.token() == "shpat_x"
    assert isinstance(token_source(shop_for(sandbox, "oauth"), redis, keys, cipher, session), MintedTokens)
    with pytest.raises(TokenKeyError, match="SHOPSYNC_TOKEN_KEY"):
        token_source(shop_for(sandbox, "client_credentials"), redis, keys, None, session)
