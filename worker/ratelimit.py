"""Rate limits shared by every process of the pool, enforced in Redis (GCRA, reservation style).

Each bucket is one Redis string: its theoretical arrival time (TAT) in microseconds of Redis
server time. One Lua script per acquire reads the server clock (`TIME`, safe under Redis 7's
effects replication), reserves the caller's slot by moving the TAT forward, and answers how long
the caller must wait for that slot. The caller sleeps that long, then sends. So:

- many processes draw from one budget, and process clocks never matter;
- waiters are served in the order their acquire reached Redis (a reservation, not a race:
  no polling, no thundering herd, nobody starves);
- a bucket admits `burst` requests at once, then `rate_per_s` steadily; at any moment its level
  (requests in flight or reserved that have not leaked yet) is `(TAT - now) * rate`.

A request whose wait would exceed `max_wait_s`, or what is left of its job's budget
(`worker.budget`), reserves nothing and raises `WaitTooLongError`: the job should give its slot
back to the queue rather than hold a worker for minutes, or be cut off by its timeout.

The APIs' own view is fed back three ways. `raise_level` and `hold` move only the TAT, so they
act on new acquires (APSIS 429s hold the profile or address bucket). `delay` moves the whole
schedule: for `shiftable` buckets (Shopify's) waiters re-read a per-bucket shift after their
sleep, so reservations already handed out wait too; Shopify's call-limit header (its bucket fuller
than ours: another client of the same app and store) and its 429s use it, at most once per
congestion period (a guard key), since every answer in flight reports the same congestion.

Concurrency is limited too, per process (`concurrency()` gives one asyncio.Semaphore per name),
so a slow API cannot pile up open requests; with N processes the pool holds at most N * size.
Optionally `lease()` caps the whole pool as well (a Redis sorted set of expiring leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import ApsisAccount, Limits, Shop
from worker import budget, metrics
from worker.errors import LimiterTimeoutError

_US = 1_000_000

# KEYS[1] bucket, KEYS[2] its schedule shift, KEYS[3] (optional) state hash;
# ARGV interval_us, burst, cost, max_wait_us, name. Returns {admitted (1|0), wait_us, shift_us}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait < 0 then wait = 0 end
local shift = tonumber(redis.call('GET', KEYS[2]) or '0')
if max_wait >= 0 and wait > max_wait then
  return {0, math.floor(wait), shift}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if #KEYS > 2 then
  -- A snapshot at this acquire for `shopsync status` (limiter_state() computes live levels).
  redis.call('HSET', KEYS[3], ARGV[5], cjson.encode({
    interval_us = interval, rate_per_s = 1000000 / interval, burst = burst,
    level = (new_tat - now) / interval, wait_s = wait / 1000000, at = now / 1000000}))
end
return {1, math.floor(wait), shift}
"""

# Delay the whole schedule of a bucket: every reservation already handed out and every future
# one moves `delay_us` later (waiters re-read the shift after their sleep). A guard makes the
# many answers reporting the same congestion count once: none is applied until `until` passes.
# An idle bucket is first filled (its burst spent), so the next new acquire waits `delay` too.
# KEYS[1] bucket, KEYS[2] shift, KEYS[3] guard; ARGV delay_us, guard_us, (burst-1)*interval_us.
# Returns 1 if applied.
_DELAY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local guard = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < guard then return 0 end
local delay = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local full = now + tonumber(ARGV[3])
if tat < full then tat = full end
local new_tat = tat + delay
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
redis.call('INCRBY', KEYS[2], math.floor(delay))
redis.call('PEXPIRE', KEYS[2], 3600000)
local until_ = now + delay + tonumber(ARGV[2])
redis.call('SET', KEYS[3], string.format('%.0f', until_), 'PX', math.ceil((until_ - now) / 1000) + 1)
return 1
"""

# KEYS[1] bucket; ARGV offset_us: make TAT at least now + offset. Returns 1 if it moved.
_RAISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local target = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if target <= tat then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', math.ceil((target - now) / 1000) + 1000)
return 1
"""


# A pool-wide concurrency lease: KEYS[1] sorted set of lease id -> expiry (us); ARGV limit,
# ttl_us, lease id. Expired leases (a crashed process) are dropped first. Returns 1 if granted.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
return 1
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One shared budget. `kind` labels metrics; `listed` buckets appear in `state()`."""

    name: str
    rate_per_s: float
    burst: float
    kind: str = ""
    listed: bool = True
    shiftable: bool = False  # waiters honour `delay()` of reservations already handed out

    @property
    def interval_us(self) -> int:
        return max(1, round(_US / self.rate_per_s))


@dataclass(frozen=True, slots=True)
class BucketState:
    name: str
    rate_per_s: float
    burst: float
    level: float  # requests counted against the bucket right now (0 = idle, burst = full)
    wait_s: float  # how long a request arriving now would wait


class WaitTooLongError(Exception):
    def __init__(self, name: str, wait_s: float) -> None:
        self.name, self.wait_s = name, wait_s
        super().__init__(f"rate limit {name}: next slot in {wait_s:.1f} s")


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        max_wait_s: float = 30.0,
        jitter_s: float = 0.002,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_wait_s = max_wait_s
        self.jitter_s = jitter_s
        self._acquire = redis.register_script(_ACQUIRE)
        self._raise = redis.register_script(_RAISE)
        self._delay = redis.register_script(_DELAY)
        self._lease = redis.register_script(_LEASE)
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @property
    def registry_key(self) -> str:
        return state_key(self.keys)

    async def acquire(
        self,
        name: str,
        rate_per_s: float,
        burst: float,
        cost: float = 1,
        *,
        max_wait_s: float | None = None,
        kind: str = "",
        listed: bool = True,
    ) -> float:
        """Reserve a slot in bucket `name`, sleep until it comes, return the seconds waited."""
        return await self.acquire_bucket(
            Bucket(name, rate_per_s, burst, kind, listed), cost, max_wait_s=max_wait_s
        )

    async def acquire_bucket(
        self, bucket: Bucket, cost: float = 1, *, max_wait_s: float | None = None
    ) -> float:
        limit = budget.cap_wait(self.max_wait_s if max_wait_s is None else max_wait_s)
        keys = [self.keys.limiter(bucket.name), self._shift_key(bucket)]
        if bucket.listed:
            keys.append(self.registry_key)
        admitted, wait_us, shift_us = await self._acquire(
            keys=keys,
            args=[bucket.interval_us, _num(bucket.burst), _num(cost), round(limit * _US), bucket.name],
        )
        wait = int(wait_us) / _US
        if not admitted:
            raise WaitTooLongError(bucket.name, wait)
        if wait > 0:
            # The jitter only ever delays: it spreads processes woken for adjacent slots.
            wait += random.uniform(0, self.jitter_s)
            await asyncio.sleep(wait)
            if bucket.shiftable:
                wait += await self._follow_shift(bucket, int(shift_us), limit)
        metrics.limiter_waited(bucket.kind or "other", wait)
        return wait

    async def _follow_shift(self, bucket: Bucket, seen_us: int, limit_s: float) -> float:
        """Sleep as far as the schedule was delayed while we slept (a bounded number of times)."""
        extra = 0.0
        for _ in range(8):
            current = int(await self.redis.get(self._shift_key(bucket)) or 0)
            if current <= seen_us or extra >= limit_s:
                break
            step = (current - seen_us) / _US
            seen_us = current
            extra += step
            await asyncio.sleep(step)
        return extra

    async def delay(self, bucket: Bucket, seconds: float, guard_s: float = 0.0) -> bool:
        """Nobody sends for `seconds`: the bucket's whole schedule moves that much later,
        reservations already handed out too (for `shiftable` buckets). Ignored while an earlier delay and its guard are running, so
        a burst of answers reporting the same congestion delays once. True when applied."""
        if seconds <= 0:
            return False
        applied = await self._delay(
            keys=[
                self.keys.limiter(bucket.name),
                self._shift_key(bucket),
                self.keys.limiter(f"{bucket.name}:guard"),
            ],
            args=[
                round(seconds * _US),
                round(guard_s * _US),
                round(max(0.0, bucket.burst - 1) * bucket.interval_us),
            ],
        )
        return bool(applied)

    def _shift_key(self, bucket: Bucket) -> str:
        return self.keys.limiter(f"{bucket.name}:shift")

    async def raise_level(self, bucket: Bucket, level: float) -> bool:
        """Make the bucket at least `level` full (the API says it is fuller than we think)."""
        if level <= 0:
            return False
        moved = await self._raise(
            keys=[self.keys.limiter(bucket.name)], args=[round(level * bucket.interval_us)]
        )
        return bool(moved)

    async def hold(self, bucket: Bucket, seconds: float) -> bool:
        """Nobody gets a slot in this bucket for `seconds` (a 429 with Retry-After)."""
        # The next acquire waits TAT + interval - burst*interval - now; solve for `seconds`.
        level = max(0.0, bucket.burst - 1) + seconds * bucket.rate_per_s
        return await self.raise_level(bucket, level)

    def concurrency(self, name: str, size: int) -> asyncio.Semaphore:
        """This process's semaphore for `name` (created on first use with `size` permits)."""
        semaphore = self._semaphores.get(name)
        if semaphore is None:
            semaphore = self._semaphores[name] = asyncio.Semaphore(max(1, size))
        return semaphore

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, size: int, *, ttl_s: float = 120.0, max_wait_s: float | None = None
    ) -> AsyncIterator[None]:
        """Hold one of `size` permits shared by the whole pool (optional, on top of the
        per-process semaphore). Leases of a crashed process expire after `ttl_s`, which must
        exceed the longest request. Waiting polls with a growing pause: not FIFO across
        processes, so keep it a cap that is rarely reached, not a queue."""
        key = self.keys.limiter(f"{name}:leases")
        lease_id = uuid.uuid4().hex
        limit = budget.cap_wait(self.max_wait_s if max_wait_s is None else max_wait_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        pause = 0.005
        while not await self._lease(keys=[key], args=[max(1, size), round(ttl_s * _US), lease_id]):
            if loop.time() + pause > deadline:
                raise WaitTooLongError(f"{name}:leases", pause)
            await asyncio.sleep(pause * (1 + random.random()))
            pause = min(0.2, pause * 2)
        try:
            yield
        finally:
            await self.redis.zrem(key, lease_id)

    async def state(self) -> list[BucketState]:
        """Every listed bucket's level right now (for `shopsync status` and `/admin/status`)."""
        return await limiter_state(self.redis, self.keys)


def state_key(keys: Keys) -> str:
    """Hash of listed bucket name -> JSON (config and a snapshot of the level at the last acquire).
    Bucket names are "api:..." so "state" cannot collide with a bucket."""
    return keys.limiter("state")


async def limiter_state(redis: Redis, keys: Keys) -> list[BucketState]:
    """Live level per listed bucket, read in one round trip (plus one per 500 buckets)."""
    registry = await cast("Awaitable[dict[Any, Any]]", redis.hgetall(state_key(keys)))
    entries: list[tuple[str, int, float]] = []
    for name, raw in registry.items():
        try:
            spec = orjson.loads(raw)
            entries.append((_text(name), int(spec["interval_us"]), float(spec["burst"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not ours (or an older format): skip rather than fail the status page
    entries.sort()
    out: list[BucketState] = []
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.mget([keys.limiter(name) for name, _, _ in chunk])
            (seconds, micros), tats = await pipe.execute()
        now = int(seconds) * _US + int(micros)
        for (name, interval, burst), tat_raw in zip(chunk, tats, strict=True):
            tat = int(tat_raw) if tat_raw is not None else now
            level = max(0, tat - now) / interval
            wait = max(0, tat + interval - burst * interval - now) / _US
            out.append(BucketState(name, round(_US / interval, 6), burst, round(level, 3), round(wait, 6)))
    return out


def _num(value: float) -> str:
    """Exact text for Lua's tonumber (no float repr surprises like 1e-05)."""
    return format(value, ".6f") if not float(value).is_integer() else str(int(value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- the buckets of the two APIs -------------------------------------------------------------
#
# Shopify's REST limit is a leaky bucket (40 deep, 2/s leak by default): ours is the same shape,
# scaled by `safety`. APSIS documents requests per second (the sandbox enforces it as a sliding
# one-second window): no burst there, so the margin (100 - 95 per second) is left to absorb
# timing jitter between our clock and the server's (a process or the server running late bunches
# requests up); with a burst of 5 the very first second after a cold start already overflowed.


def shopify_bucket(shop: Shop) -> Bucket:
    limits = shop.limits
    return Bucket(
        f"shopify:{shop.domain}",
        limits.shopify_leak_per_s * limits.safety,
        max(1.0, math.floor(limits.shopify_bucket_size * limits.safety)),
        kind="shopify",
        shiftable=True,  # the call-limit header and 429s delay reservations already handed out
    )


def apsis_account_bucket(account: ApsisAccount, limits: Limits) -> Bucket:
    return Bucket(
        f"apsis:{account.client_id}", limits.apsis_requests_per_s * limits.safety, 1.0, kind="apsis"
    )


def apsis_profile_bucket(account: ApsisAccount, limits: Limits, keyspace: str, profile_key: str) -> Bucket:
    return Bucket(
        f"apsis-profile:{account.client_id}:{keyspace}:{profile_key}",
        limits.apsis_profile_requests_per_s * limits.safety,
        1.0,
        kind="apsis-profile",
        listed=False,  # one per customer: too many to list
    )


def apsis_address_bucket(account: ApsisAccount, limits: Limits, channel: str, address: str) -> Bucket:
    """The per-subject limit applies to a consent address like to a profile key. The address is
    hashed: bucket names are Redis keys, and keys must not hold personal data."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:20]
    return apsis_profile_bucket(account, limits, channel, f"address-{digest}")


APSIS_TOKEN_REQUESTS_PER_MIN = 10


def apsis_token_bucket(account: ApsisAccount, limits: Limits) -> Bucket:
    """10 token requests per minute: a burst of 2 (a revoked token is replaced at once even just
    after a refresh) and 7 per minute after it, so no 60 s window ever sees more than 9."""
    return Bucket(f"apsis-token:{account.client_id}", 7 / 60, 2.0, kind="apsis-token")


@contextlib.asynccontextmanager
async def permit(
    limiter: RateLimiter,
    semaphore: asyncio.Semaphore,
    *,
    api: Literal["apsis", "shopify"],
    name: str,
    pool_size: int | None,
    max_wait_s: float | None,
    method: str,
    route: str,
) -> AsyncIterator[None]:
    """A client's right to send one request: this process's semaphore and, when `pool_size`
    is set, a pool-wide lease (a busy pool raises `LimiterTimeoutError`). Inside a job, the wait
    for the semaphore ends with the job's budget too (requests queued behind a slow API)."""
    limit = budget.cap_wait(math.inf)
    try:
        async with asyncio.timeout(None if math.isinf(limit) else limit):
            await semaphore.acquire()
    except TimeoutError:
        raise LimiterTimeoutError(
            api, None, "concurrency", "process permits busy", limit, method=method, route=route
        ) from None
    try:
        if pool_size is None:
            yield
            return
        try:
            lease = limiter.lease(name, pool_size, max_wait_s=max_wait_s)
            await lease.__aenter__()
        except WaitTooLongError as exc:
            raise LimiterTimeoutError(
                api, None, "concurrency", "pool-wide permits busy", exc.wait_s, method=method, route=route
            ) from None
        try:
            yield
        finally:
            await lease.__aexit__(None, None, None)
    finally:
        semaphore.release()
