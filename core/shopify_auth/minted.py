"""`MintedTokens`: the `TokenSource` of a shop whose tokens are minted (client credentials) or
refreshed (authorization code with expiring offline tokens), one token shared by the whole pool.

`token()`:
1. reads the stored pair and the shop's "needs approval" mark in one round trip; a marked shop
   raises `NeedsApprovalError` at once (no request to Shopify);
2. a stored token that is not yet due (`TokenRecord.fresh`: 5 min, or 10 % of its life, ahead of
   expiry) is returned;
3. otherwise one process at a time renews it: a Redis lock (`SET NX PX` with a fencing token from
   a counter, both in one script) is taken; the holder reads the pair again (someone may have just
   renewed it), mints (client credentials) or refreshes (oauth), and stores the new pair with its
   fence (refused if a newer holder took over) before anyone uses it. The others keep using the
   current token while it has not expired, or wait for the new pair (polling), up to the lock's
   life plus the endpoint's timeout, then raise `TokenUnavailableError` (transient).
`invalidate(token)` after a 401: renews only if the stored token is still `token`, so a 401 seen
by many jobs at once costs one renewal.
A refused grant (`invalid_grant`, ...) or an oauth shop without a refresh token marks the shop
"needs approval" and raises `NeedsApprovalError`: its jobs are held by the worker, not failed.
`reconnect()` tries one client credentials grant for a marked shop (the worker calls it now and
then; an oauth shop is reconnected only by the merchant approving again).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from core.logging import get_logger
from core.shopify_auth import client_credentials, refresh_token
from core.shopify_auth.cipher import TokenCipher
from core.shopify_auth.grant import AuthShop, GrantRefusedError, TokenUnavailableError
from core.shopify_auth.record import TokenRecord
from core.shopify_auth.source import NeedsApprovalError
from core.shopify_auth.store import TokenStore

log = get_logger(__name__)

# KEYS: lock, fence counter. ARGV: holder, ttl ms. -> the new fence, or 0 when the lock is held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
return fence
"""
# KEYS: lock. ARGV: fence. Deletes the lock only while it is still this fence's.
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class MintedTokens:
    def __init__(
        self,
        shop: AuthShop,
        redis: aioredis.Redis,
        keys: Keys,
        cipher: TokenCipher,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 10.0,
        lock_ttl_s: float = 20.0,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.shop = shop
        self.domain = shop.domain
        self.session = session
        self.store = TokenStore(redis, keys, cipher)
        self.timeout_s = timeout_s
        self.lock_ttl_s = max(lock_ttl_s, timeout_s + 1.0)
        self.poll_s = poll_s
        self.clock = clock
        self.holder = holder or default_holder()
        self._lock_key = keys.shopify_token_lock(shop.domain)
        self._fence_key = keys.shopify_token_fence(shop.domain)
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._release_script = redis.register_script(_RELEASE)

    @property
    def mode(self) -> str:
        return self.shop.auth.mode

    async def token(self) -> str:
        record, reason = await self.store.read(self.domain)
        if reason is not None:
            raise NeedsApprovalError(self.domain, reason)
        if record is not None and record.fresh(self.clock()):
            return record.access_token
        if record is None and self.mode == "oauth":
            await self._needs_approval("not connected: install the app through /auth/install")
        renewed = await self._renew(record.access_token if record else None, force=False)
        return renewed.access_token

    async def invalidate(self, token: str) -> None:
        record = await self.store.get(self.domain)
        if record is None or record.access_token != token:
            return  # already renewed by someone else (or never stored): nothing to do
        log.info("shopify_token_rejected", shop=self.domain)
        await self._renew(token, force=True)

    async def reconnect(self) -> bool:
        """One client credentials grant for a shop marked "needs approval"; True once it has a
        token again (the mark is cleared with the stored pair). oauth shops: False."""
        if self.mode != "client_credentials":
            return False
        fence = await self._acquire()
        if fence is None:
            return False
        try:
            await self._store(
                await client_credentials.mint(
                    self.session, self.shop, timeout_s=self.timeout_s, clock=self.clock
                ),
                fence,
            )
            return True
        except GrantRefusedError as exc:
            await self.store.mark_needs_approval(self.domain, f"client credentials refused: {exc.error}")
            return False
        except TokenUnavailableError:
            return False
        finally:
            await self._release(fence)

    # --- renewal under the lock -----------------------------------------------------------------

    async def _renew(self, seen: str | None, *, force: bool) -> TokenRecord:
        """A token other than `seen` (or `seen` itself while it is still usable and not `force`)."""
        deadline = time.monotonic() + self.lock_ttl_s + self.timeout_s
        while True:
            fence = await self._acquire()
            if fence is not None:
                try:
                    return await self._renew_locked(seen, fence)
                finally:
                    await self._release(fence)
            current, reason = await self.store.read(self.domain)
            if reason is not None:
                raise NeedsApprovalError(self.domain, reason)
            now = self.clock()
            # Renewed meanwhile, or still valid while another process renews it:
            if current is not None and current.usable(now) and (current.access_token != seen or not force):
                return current
            if time.monotonic() > deadline:
                raise TokenUnavailableError(self.domain, "another process's token renewal took too long")
            await asyncio.sleep(self.poll_s)

    async def _renew_locked(self, seen: str | None, fence: int) -> TokenRecord:
        current, reason = await self.store.read(self.domain)
        if reason is not None:
            raise NeedsApprovalError(self.domain, reason)
        if current is not None and current.access_token != seen and current.fresh(self.clock()):
            return current  # another process renewed it just before we took the lock
        try:
            if self.mode == "client_credentials":
                new = await client_credentials.mint(
                    self.session, self.shop, timeout_s=self.timeout_s, clock=self.clock
                )
            elif current is None or not current.refresh_token:
                await self._needs_approval("no refresh token stored: approve the app again")
            else:
                new = await refresh_token.refresh(
                    self.session, self.shop, current.refresh_token, timeout_s=self.timeout_s, clock=self.clock
                )
        except GrantRefusedError as exc:
            grant = "refresh" if self.mode == "oauth" else "client credentials grant"
            await self._needs_approval(f"{grant} refused: {exc.error}")
        return await self._store(new, fence)

    async def _store(self, new: TokenRecord, fence: int) -> TokenRecord:
        if await self.store.put(self.domain, new, fence=fence):
            expires_in = None if new.expires_at is None else round(new.expires_at - self.clock())
            log.info("shopify_token_renewed", shop=self.domain, mode=self.mode, expires_in_s=expires_in)
            return new
        # A newer holder took the lock over (ours outlived its life): its pair wins, ours is dropped.
        log.warning("shopify_token_superseded", shop=self.domain)
        current = await self.store.get(self.domain)
        if current is not None and current.usable(self.clock()):
            return current
        raise TokenUnavailableError(self.domain, "token renewal superseded by another process")

    async def _needs_approval(self, reason: str) -> Any:
        await self.store.mark_needs_approval(self.domain, reason)
        log.warning("shopify_needs_approval", shop=self.domain, reason=reason)
        raise NeedsApprovalError(self.domain, reason)

    async def _acquire(self) -> int | None:
        ttl_ms = str(round(self.lock_ttl_s * 1000))
        fence: Any = await self._acquire_script(
            keys=[self._lock_key, self._fence_key], args=[self.holder, ttl_ms]
        )
        return int(fence) or None

    async def _release(self, fence: int) -> None:
        try:
            await self._release_script(keys=[self._lock_key], args=[str(fence)])
        except Exception:  # the lock expires by itself; a failed release only delays the next renewal
            log.warning("shopify_token_lock_release_failed", shop=self.domain)
