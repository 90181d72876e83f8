"""TokenStore and TokenCipher against a real Redis: encrypted round trip, fenced writes, approval marks."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth import ENV_VAR, TokenCipher, TokenKeyError, TokenRecord, TokenStore

SHOP = "a-store.myshopify.com"
RECORD = TokenRecord(
    access_token="shpat_exp_secret_access",
    expires_at=2_000_000_000.0,
    refresh_token="shprt_secret_refresh",
    refresh_expires_at=2_007_776_000.0,
    scope="read_customers,read_orders",
    issued_at=1_999_996_400.0,
)


async def test_round_trip_is_encrypted_at_rest(
    redis: aioredis.Redis, keys: Keys, cipher: TokenCipher
) -> None:
    store = TokenStore(redis, keys, cipher)
    assert await store.get(SHOP) is None
    await store.put(SHOP, RECORD)
    assert await store.get(SHOP) == RECORD
    raw = await redis.get(keys.shopify_token(SHOP))
    assert raw is not None
    assert b"shpat" not in raw and b"shprt" not in raw and b"secret" not in raw
    assert "secret" not in repr(RECORD)


async def test_another_key_cannot_read_it(redis: aioredis.Redis, keys: Keys, cipher: TokenCipher) -> None:
    await TokenStore(redis, keys, cipher).put(SHOP, RECORD)
    other = TokenStore(redis, keys, TokenCipher(TokenCipher.generate_key()))
    with pytest.raises(TokenKeyError, match=ENV_VAR):
        await other.get(SHOP)


def test_key_from_the_environment() -> None:
    with pytest.raises(TokenKeyError, match=f"{ENV_VAR} is not set"):
        TokenCipher.from_env({})
    with pytest.raises(TokenKeyError, match=f"{ENV_VAR} is not a valid key"):
        TokenCipher.from_env({ENV_VAR: "too-short"})
    cipher = TokenCipher.from_env({ENV_VAR: TokenCipher.generate_key()})
    assert cipher.decrypt(cipher.encrypt(b"x")) == b"x"


def test_a_generated_secret_is_a_key_too() -> None:
    """Heroku's app.json generator makes a random secret, not a Fernet key: its hash is one."""
    secret = "9f" * 32
    sealed = TokenCipher.from_env({ENV_VAR: secret}).encrypt(b"x")
    assert TokenCipher.from_env({ENV_VAR: secret}).decrypt(sealed) == b"x"
    with pytest.raises(TokenKeyError, match=ENV_VAR):
        TokenCipher.from_env({ENV_VAR: "8e" * 32}).decrypt(sealed)
    with pytest.raises(TokenKeyError, match="at least 32 characters"):
        TokenCipher.from_env({ENV_VAR: "x" * 31})


async def test_needs_approval_marks(redis: aioredis.Redis, keys: Keys, cipher: TokenCipher) -> None:
    store = TokenStore(redis, keys, cipher)
    assert await store.needs_approval(SHOP) is None
    await store.mark_needs_approval(SHOP, "refresh refused: invalid_grant")
    await store.mark_needs_approval("b.myshopify.com", "app uninstalled")
    assert await store.needs_approval(SHOP) == "refresh refused: invalid_grant"
    assert await store.shops_needing_approval() == {
        SHOP: "refresh refused: invalid_grant",
        "b.myshopify.com": "app uninstalled",
    }
    await store.clear_needs_approval("b.myshopify.com")
    await store.put(SHOP, RECORD)  # a stored pair: connected again
    assert await store.shops_needing_approval() == {}


async def test_fenced_put_refused_after_a_newer_lock(
    redis: aioredis.Redis, keys: Keys, cipher: TokenCipher
) -> None:
    store = TokenStore(redis, keys, cipher)
    await redis.set(keys.shopify_token_fence(SHOP), 7)
    await redis.set(keys.shopify_token_lock(SHOP), "7:host:1")
    assert not await store.put(SHOP, RECORD, fence=6)  # an older holder
    assert await store.get(SHOP) is None
    assert await store.put(SHOP, RECORD, fence=7)
    assert await store.get(SHOP) == RECORD
    assert await redis.get(keys.shopify_token_lock(SHOP)) is None  # released with the write


def test_renewal_ahead_of_expiry() -> None:
    hour = TokenRecord("a", 10_000.0, "r", None, "", issued_at=6_400.0)
    assert hour.renew_at == 10_000.0 - 300  # 5 minutes ahead
    short = TokenRecord("a", 10_010.0, None, None, "", issued_at=10_000.0)
    assert short.renew_at == 10_009.0  # 10 % of a 10 s life
    assert short.fresh(10_008.9) and not short.fresh(10_009.0) and short.usable(10_009.5)
    assert TokenRecord("a", None, None, None, "").fresh(1e12)
