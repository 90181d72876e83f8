"""The APSIS One OAuth token: one per account, shared by every process through Redis.

- The token lives at `Keys.token(client_id)` with a TTL a little under its lifetime; every process
  reads it from there (and keeps it in memory until it is due for refresh).
- It is refreshed at 80% of its lifetime, under a Redis lock (SET NX PX): one process fetches,
  the others keep using the still valid token, so a pool of any size makes one request per window.
  With no token at all, the processes without the lock wait for the one fetching it.
- Every fetch also draws from the token endpoint's own bucket (10 per minute).
- `invalidate(token)` (after a 401/403) deletes the cached token only if it is still that token,
  so a process cannot throw away the fresh token another one just stored.
- Time comes from the key's PTTL (Redis's clock), never from this process's clock.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson
from redis.asyncio import Redis

from core.keys import Keys
from core.logging import get_logger
from mappings.installation import ApsisAccount, Limits
from worker import budget, metrics
from worker.errors import AuthError, TransientApiError, error_from_response, parse_retry_after
from worker.http import build_url, send
from worker.ratelimit import Bucket, RateLimiter, WaitTooLongError, apsis_token_bucket

log = get_logger(__name__)

REFRESH_AT = 0.8  # share of the lifetime after which a token is refreshed
TOKEN_ROUTE = "/oauth/token"

_COMPARE_AND_DELETE = """
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    refresh_at: float  # time.monotonic() after which Redis is asked again


class TokenCache:
    def __init__(
        self,
        account: ApsisAccount,
        redis: Redis,
        limiter: RateLimiter,
        keys: Keys,
        session: aiohttp.ClientSession,
        limits: Limits,
        *,
        bucket: Bucket | None = None,
        lock_ttl_s: float = 20.0,
        poll_s: float = 0.05,
    ) -> None:
        self.account = account
        self.redis = redis
        self.limiter = limiter
        self.session = session
        self.key = keys.token(account.client_id)
        self.lock_key = f"{self.key}:lock"
        self.bucket = bucket or apsis_token_bucket(account, limits)
        self.lock_ttl_s = lock_ttl_s
        self.poll_s = poll_s
        self._cached: _Cached | None = None
        self._local_lock = asyncio.Lock()  # one refresh attempt per process at a time
        self._cad = redis.register_script(_COMPARE_AND_DELETE)
        self._release = redis.register_script(_RELEASE_LOCK)

    async def get(self) -> str:
        cached = self._cached
        if cached is not None and time.monotonic() < cached.refresh_at:
            return cached.token
        deadline = time.monotonic() + budget.cap_wait(self.lock_ttl_s + 10)  # and the job's budget
        while True:
            stored = await self._read()
            if stored is not None and stored[1] > 0:
                return stored[0]  # fresh: nothing to do
            try:
                # With a still valid token nobody needs to wait for a slot of the token endpoint.
                fetched = await self._try_refresh(wait=stored is None)
            except TransientApiError:
                if stored is None:
                    raise
                fetched = None
            if fetched is not None:
                return fetched
            if stored is not None:
                # Due for refresh but someone else is at it (or the endpoint's limit says not
                # yet): keep using it, and look again in a second rather than on every call.
                self._cached = _Cached(stored[0], time.monotonic() + 1.0)
                return stored[0]
            if time.monotonic() > deadline:
                raise TransientApiError(
                    "apsis", None, "token", "timed out waiting for another process to fetch the token"
                )
            await asyncio.sleep(self.poll_s)

    async def invalidate(self, token: str) -> None:
        """Forget `token` (APSIS refused it), here and in Redis if it is still the stored one."""
        if self._cached is not None and self._cached.token == token:
            self._cached = None
        await self._cad(keys=[self.key], args=[token])

    async def _read(self) -> tuple[str, float] | None:
        """The stored token and the seconds until it is due for refresh (<= 0: due now)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.key)
            pipe.pttl(self.key)
            raw, pttl = await pipe.execute()
        if raw is None or pttl is None or int(pttl) <= 0:
            return None
        entry = orjson.loads(raw)
        remaining_ms = int(pttl) + int(entry["margin_ms"])  # the real expiry is margin after the TTL
        due_in = (remaining_ms - (1 - REFRESH_AT) * int(entry["lifetime_ms"])) / 1000
        token = str(entry["access_token"])
        if due_in > 0:
            self._cached = _Cached(token, time.monotonic() + due_in)
        return token, due_in

    async def _try_refresh(self, wait: bool) -> str | None:
        """Fetch and store a new token if this process wins the lock; None if another has it."""
        if self._local_lock.locked():
            return None  # this process is already fetching: same as another process holding it
        async with self._local_lock:
            lock_value = secrets.token_hex(8)
            locked = await self.redis.set(
                self.lock_key, lock_value, nx=True, px=round(self.lock_ttl_s * 1000)
            )
            if not locked:
                return None
            try:
                stored = await self._read()  # someone may have finished just before we locked
                if stored is not None and stored[1] > 0:
                    return stored[0]
                return await self._fetch(max_wait_s=self.lock_ttl_s / 2 if wait else 0.0)
            finally:
                await self._release(keys=[self.lock_key], args=[lock_value])

    async def _fetch(self, max_wait_s: float) -> str:
        try:
            await self.limiter.acquire_bucket(self.bucket, max_wait_s=max_wait_s)
        except WaitTooLongError as exc:
            raise TransientApiError(
                "apsis", None, "token", "token endpoint limit reached", exc.wait_s, route=TOKEN_ROUTE
            ) from None
        body = orjson.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": self.account.client_id,
                "client_secret": self.account.client_secret,
            }
        )
        answer = await send(
            self.session,
            "apsis",
            "POST",
            build_url(self.account.base_url, TOKEN_ROUTE),
            TOKEN_ROUTE,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
        )
        if answer.status >= 400:
            metrics.token_requested("error")
            error = error_from_response(
                "apsis",
                answer.status,
                answer.body,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
                method="POST",
                route=TOKEN_ROUTE,
            )
            if answer.status in (400, 401, 403):
                raise AuthError(
                    "apsis", answer.status, error.title or "token refused", error.detail, route=TOKEN_ROUTE
                )
            raise error
        data: Any = answer.json()
        token = str(data["access_token"])
        lifetime_ms = max(1000, round(float(data.get("expires_in") or 3600) * 1000))
        margin_ms = min(60_000, lifetime_ms // 10)
        entry = orjson.dumps({"access_token": token, "lifetime_ms": lifetime_ms, "margin_ms": margin_ms})
        await cast(Awaitable[Any], self.redis.set(self.key, entry, px=lifetime_ms - margin_ms))
        self._cached = _Cached(token, time.monotonic() + REFRESH_AT * lifetime_ms / 1000)
        metrics.token_requested("ok")
        log.info("apsis_token_fetched", client_id=self.account.client_id, expires_in_s=lifetime_ms / 1000)
        return token
