"""Jobs held while their shop needs approval: kept, not failed, and run again once it is back.

A job whose Shopify token cannot be had until the merchant approves the app again
(`core.shopify_auth.NeedsApprovalError`) is not retried (retrying cannot help and would spend its
tries) nor dead-lettered: `hold` keeps it, with its function, arguments and queue, in the shop's
hash `Keys.held_jobs(shop)` (and the shop in `Keys.held_shops`). `release_ready` runs in every
worker process now and then: for a shop that no longer needs approval it puts each held job back
on its queue as a new job, first try (one Lua call per job takes it out of the hash and enqueues
it, so two processes never both release one). For a client-credentials shop still marked, one
process a period tries one grant (`MintedTokens.reconnect`): an app whose credentials work again
is connected without anyone's help.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.keys import Keys
from core.logging import get_logger
from core.redis_conn import script as redis_script

log = get_logger(__name__)

RECONNECT_PROBE_S = 60

# KEYS: held hash, arq job key, queue, held shops. ARGV: held job id, job bytes, ttl ms, score, shop.
_RELEASE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PSETEX', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], string.sub(KEYS[2], 9))
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[5]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class HeldJob:
    job_id: str
    function: str
    args: list[Any]
    queue: str
    shop: str
    reason: str
    held_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> HeldJob:
        return cls(**orjson.loads(raw))


async def hold(redis: aioredis.Redis, keys: Keys, job: HeldJob) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.held_jobs(job.shop), job.job_id, job.to_json().decode())
        pipe.sadd(keys.held_shops, job.shop)
        pipe.hincrby(keys.counters, "held_jobs", 1)
        await pipe.execute()


async def held_jobs(redis: aioredis.Redis, keys: Keys, shop: str) -> list[HeldJob]:
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.held_jobs(shop)))
    return sorted((HeldJob.from_json(v) for v in raw.values()), key=lambda j: j.held_at)


async def held_counts(redis: aioredis.Redis, keys: Keys) -> dict[str, int]:
    """Shop -> number of held jobs (for status and metrics)."""
    shops = [s.decode() for s in await cast(Awaitable[set[bytes]], redis.smembers(keys.held_shops))]
    counts: dict[str, int] = {}
    for shop in sorted(shops):
        counts[shop] = int(await cast(Awaitable[int], redis.hlen(keys.held_jobs(shop))))
    return counts


async def release(redis: aioredis.Redis, keys: Keys, shop: str, limit: int | None = None) -> int:
    """Put the held jobs of `shop` back on their queues (new job id, first try), every one or at
    most `limit` (a backoff's probe, worker/shop_backoff.py); how many."""
    script = redis_script(redis, _RELEASE)
    released = 0
    async for _, raw in redis.hscan_iter(keys.held_jobs(shop), count=200):
        if limit is not None and released >= limit:
            break
        job = HeldJob.from_json(raw)
        new_id = uuid.uuid4().hex
        done = await script(
            keys=[keys.held_jobs(shop), f"arq:job:{new_id}", job.queue, keys.held_shops],
            args=[job.job_id, job_bytes(job.function, tuple(job.args)), JOB_TTL_MS, now_ms(), shop],
        )
        released += int(done)
    if released:
        log.info("held_jobs_released", shop=shop, jobs=released)
    return released


async def release_ready(
    redis: aioredis.Redis,
    keys: Keys,
    needing_approval: Callable[[], Awaitable[dict[str, str]]],
    reconnect: Callable[[str], Awaitable[bool]],
    client_credentials_shops: Iterable[str],
) -> int:
    """Release the held jobs of every shop that no longer needs approval; probe marked
    client-credentials shops (one process a period). Returns the jobs released."""
    marked = await needing_approval()
    for shop in set(marked) & set(client_credentials_shops):
        probe = await redis.set(
            keys.shopify_reconnect_probe(shop), str(time.time()), nx=True, ex=RECONNECT_PROBE_S
        )
        if probe and await reconnect(shop):
            log.info("shopify_reconnected", shop=shop)
            marked.pop(shop, None)
    shops = [s.decode() for s in await cast(Awaitable[set[bytes]], redis.smembers(keys.held_shops))]
    released = 0
    for shop in shops:
        if shop not in marked:
            released += await release(redis, keys, shop)
    return released
