"""Where a shop's Shopify token pair lives: Redis, one encrypted value per shop.

- `put(shop, record)` writes the whole pair (access token, refresh token, expiries, scopes) as one
  Fernet-encrypted value in one command, so no reader ever sees a new access token with an old
  refresh token. A stored pair means the shop is connected: the same transaction clears its
  "needs approval" mark. With `fence=`, the write (and the release of the renewal lock) happens
  only if no other process took the lock since (a Lua script): a holder that stalled past its
  lock cannot overwrite a newer pair.
- "Needs approval" is a hash shop -> reason (`Keys.needs_approval`): a refused refresh
  (`invalid_grant`), a refused client credentials grant, or an uninstalled app.
- The raw Redis value never contains a token; nothing here logs one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis

from core.keys import Keys
from core.shopify_auth.cipher import TokenCipher
from core.shopify_auth.record import TokenRecord

# KEYS: record, needs-approval hash, fence counter, lock. ARGV: value, shop, fence.
# Stores only if the fence counter still holds this holder's fence; then releases its lock.
_PUT_FENCED = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
local held = redis.call('GET', KEYS[4])
if held and string.sub(held, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. ':' then
  redis.call('DEL', KEYS[4])
end
return 1
"""


class TokenStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, cipher: TokenCipher) -> None:
        self.redis = redis
        self.keys = keys
        self.cipher = cipher
        self._put_fenced = redis.register_script(_PUT_FENCED)

    async def get(self, shop: str) -> TokenRecord | None:
        raw = await cast(Awaitable[bytes | None], self.redis.get(self.keys.shopify_token(shop)))
        return self._decode(raw)

    async def read(self, shop: str) -> tuple[TokenRecord | None, str | None]:
        """The stored pair and the "needs approval" reason, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.shopify_token(shop))
            pipe.hget(self.keys.needs_approval, shop)
            raw, reason = await pipe.execute()
        return self._decode(raw), _text(reason)

    async def put(self, shop: str, record: TokenRecord, *, fence: int | None = None) -> bool:
        """Store the pair atomically (and clear "needs approval"). With `fence`: only while that
        fence is still the newest lock's; False when a newer holder took over (nothing written)."""
        value = self.cipher.encrypt(record.to_json())
        if fence is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.shopify_token(shop), value)
                pipe.hdel(self.keys.needs_approval, shop)
                await pipe.execute()
            return True
        keys = [
            self.keys.shopify_token(shop),
            self.keys.needs_approval,
            self.keys.shopify_token_fence(shop),
            self.keys.shopify_token_lock(shop),
        ]
        stored: Any = await self._put_fenced(keys=keys, args=[value, shop, str(fence)])
        return bool(stored)

    async def delete(self, shop: str) -> None:
        """Forget the shop's pair (an uninstalled app's tokens are revoked anyway)."""
        await cast(Awaitable[Any], self.redis.delete(self.keys.shopify_token(shop)))

    async def mark_needs_approval(self, shop: str, reason: str) -> None:
        await cast(Awaitable[Any], self.redis.hset(self.keys.needs_approval, shop, reason[:200]))

    async def clear_needs_approval(self, shop: str) -> None:
        await cast(Awaitable[Any], self.redis.hdel(self.keys.needs_approval, shop))

    async def needs_approval(self, shop: str) -> str | None:
        reason = await cast(Awaitable[bytes | None], self.redis.hget(self.keys.needs_approval, shop))
        return _text(reason)

    async def shops_needing_approval(self) -> dict[str, str]:
        raw = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.keys.needs_approval))
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}

    def _decode(self, raw: bytes | None) -> TokenRecord | None:
        if raw is None:
            return None
        return TokenRecord.from_json(self.cipher.decrypt(raw))


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
