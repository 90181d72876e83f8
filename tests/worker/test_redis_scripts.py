"""Lua scripts go to Redis by EVALSHA, their body only when Redis does not know it (core.redis_conn)."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from core.keys import Keys
from core.redis_conn import run_script, script

_SET_AND_COUNT = """
-- {tag}
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[2])
"""


async def test_a_script_unknown_to_redis_is_loaded_then_run_by_its_sha(
    redis: aioredis.Redis, keys: Keys
) -> None:
    # A body no Redis has seen: the first EVALSHA answers NOSCRIPT and the body is loaded then.
    source = _SET_AND_COUNT.format(tag=uuid.uuid4().hex)
    made = script(redis, source)
    assert await redis.script_exists(made.sha) == [False]

    first = await run_script(redis, source, [keys.prefix + ":value", keys.prefix + ":count"], ["a"])
    second = await run_script(redis, source, [keys.prefix + ":value", keys.prefix + ":count"], [b"b"])

    assert (first, second) == (1, 2)
    assert await redis.get(keys.prefix + ":value") == b"b"
    assert await redis.script_exists(made.sha) == [True]
    assert script(redis, source) is made  # hashed once per client, not per call
