"""A shop's Shopify bulk-operation slots, leased through Redis by every process of the pool.

Shopify runs up to 5 bulk query operations at once per app and shop from API version 2026-01,
one before (`worker.shopify_versions.max_bulk_operations`); one more is refused. So that a full
sync's export and an audit's export of the same shop run side by side where the version allows
and wait for each other where it does not (instead of one of them learning the limit from
Shopify's refusal), a process takes a slot before `bulkOperationRunQuery` and gives it back when
the operation ends:

- the slots are one sorted set per shop (`Keys.shopify_bulk_slots`), member = holder, score =
  the lease's expiry in milliseconds of Redis's own clock (`TIME` inside the scripts, so the
  pool's machines need not agree on the time);
- `take` (one Lua call) drops lapsed leases, then adds the holder while fewer than the limit are
  held; `wait` retries it until a slot is free or the wait is over;
- once Shopify accepted the operation the lease is handed to the operation's id (`hand_over`),
  and every status read of it renews the lease (`renew`: the operation runs at Shopify whatever
  the count says, so a renewal always adds it) until a terminal status releases it;
- a process that dies stops renewing: its lease lapses after `SLOT_TTL_MS` and the slot is free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from core.keys import Keys
from core.redis_conn import command, run_script

SLOT_TTL_MS = 60_000  # a lease not renewed for this long lapses (a poll renews it every <= 2 s)
WAIT_POLL_S = 0.5  # how often a waiting process asks again (at most)

# KEYS[1] the slots; ARGV holder, limit, ttl_ms, force (1: add whatever the count).
# -> {1, 0} taken (or renewed); {0, ms until the first lease lapses} all held.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[4] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl + 1000)
return {1, 0}
"""

# KEYS[1] the slots; ARGV from, to, ttl_ms: the lease of `from` becomes `to`'s (renewed).
_HAND_OVER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl + 1000)
return 1
"""


class BulkSlots:
    """The bulk-operation slots of one shop: at most `limit` leases held across the pool."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        shop: str,
        limit: int,
        *,
        ttl_ms: int = SLOT_TTL_MS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.redis, self.shop, self.limit, self.ttl_ms = redis, shop, limit, ttl_ms
        self.key = keys.shopify_bulk_slots(shop)
        self._clock, self._sleep = clock, sleep

    async def take(self, holder: str) -> tuple[bool, float]:
        """One try: (taken, seconds until the first held lease lapses when not)."""
        taken, lapse_ms = await run_script(
            self.redis, _TAKE, [self.key], [holder, self.limit, self.ttl_ms, 0]
        )
        return bool(int(taken)), max(0.0, int(lapse_ms) / 1000)

    async def wait(self, holder: str, wait_s: float) -> bool:
        """Take a slot, waiting up to `wait_s` for one to free; False when none did."""
        deadline = self._clock() + wait_s
        while True:
            taken, lapse_s = await self.take(holder)
            if taken:
                return True
            left = deadline - self._clock()
            if left <= 0:
                return False
            await self._sleep(min(WAIT_POLL_S, lapse_s + 0.01, left))

    async def hand_over(self, holder: str, operation_id: str) -> None:
        """The holder's lease now belongs to the operation Shopify started for it."""
        await run_script(self.redis, _HAND_OVER, [self.key], [holder, operation_id, self.ttl_ms])

    async def renew(self, member: str) -> None:
        """Extend the lease of a running operation (added back if it lapsed meanwhile)."""
        await run_script(self.redis, _TAKE, [self.key], [member, self.limit, self.ttl_ms, 1])

    async def release(self, member: str) -> None:
        await command(self.redis)("ZREM", self.key, member)

    async def held(self) -> list[str]:
        """The leases not lapsed, oldest expiry first (for status and tests)."""
        now_ms = await _redis_now_ms(self.redis)
        members = await command(self.redis)("ZRANGEBYSCORE", self.key, f"({now_ms}", "+inf")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


async def _redis_now_ms(redis: Redis) -> int:
    seconds, micros = await command(redis)("TIME")
    return int(seconds) * 1000 + int(micros) // 1000
