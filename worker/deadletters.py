"""Dead letters: jobs that failed for good, kept with their payload and last error until an
operator replays or purges them. Also the capped log of recent failures that status shows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.keys import Keys

RECENT_FAILURES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job_id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    tries: int
    error_type: str
    error: str
    failed_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> DeadLetter:
        return cls(**orjson.loads(raw))


async def bury(redis: aioredis.Redis, keys: Keys, letter: DeadLetter) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.dead_letters, letter.job_id, letter.to_json().decode())
        pipe.zadd(keys.dead_letter_index, {letter.job_id: letter.failed_at})
        pipe.hincrby(keys.counters, "dead_letters", 1)
        await pipe.execute()


async def record_failure(
    redis: aioredis.Redis, keys: Keys, *, job_id: str, function: str, error: str, tries: int, final: bool
) -> None:
    entry = {"job_id": job_id, "function": function, "error": error[:500], "try": tries, "final": final}
    now = time.time()
    entry["at"] = now
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.failures, {orjson.dumps(entry): now})
        pipe.zremrangebyrank(keys.failures, 0, -RECENT_FAILURES_KEPT - 1)
        await pipe.execute()


async def list_letters(redis: aioredis.Redis, keys: Keys, limit: int = 1000) -> list[DeadLetter]:
    ids = await redis.zrevrange(keys.dead_letter_index, 0, limit - 1)
    if not ids:
        return []
    raws = await cast(Awaitable[list[bytes | None]], redis.hmget(keys.dead_letters, ids))
    return [DeadLetter.from_json(raw) for raw in raws if raw is not None]


async def get_letter(redis: aioredis.Redis, keys: Keys, job_id: str) -> DeadLetter | None:
    raw = await cast(Awaitable[bytes | None], redis.hget(keys.dead_letters, job_id))
    return DeadLetter.from_json(raw) if raw else None


async def replay(redis: aioredis.Redis, keys: Keys, job_id: str) -> str | None:
    """Put a dead letter back on its queue as a new job (first try); return the new job id."""
    letter = await get_letter(redis, keys, job_id)
    if letter is None:
        return None
    new_id = uuid.uuid4().hex
    async with redis.pipeline(transaction=True) as pipe:
        pipe.psetex(
            f"arq:job:{new_id}", JOB_TTL_MS, job_bytes(letter.function, tuple(letter.args), letter.kwargs)
        )
        pipe.zadd(letter.queue, {new_id: now_ms()})
        pipe.hdel(keys.dead_letters, job_id)
        pipe.zrem(keys.dead_letter_index, job_id)
        await pipe.execute()
    return new_id


async def purge(redis: aioredis.Redis, keys: Keys, job_id: str | None = None) -> int:
    if job_id is not None:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.dead_letters, job_id)
            pipe.zrem(keys.dead_letter_index, job_id)
            removed, _ = await pipe.execute()
        return int(removed)
    count = int(await redis.zcard(keys.dead_letter_index))
    await redis.unlink(keys.dead_letters, keys.dead_letter_index)  # any size: freed aside
    return count
