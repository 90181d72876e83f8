"""Redis connections from a URL, for redis-py and for arq, with Heroku's `rediss://` quirk handled.

Heroku Redis serves TLS with a self-signed certificate; neither redis-py's `from_url` nor arq's
`RedisSettings.from_dsn` turns certificate checking off, so both are done here for `rediss://`.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, AuthorizationError

from core.jobs import deserialize, serialize

T = TypeVar("T")

# Client -> Lua source -> its script, made once per client: registering hashes the source (SHA1),
# which a call made many times a second should not repeat. A script called without `client=` runs
# on the client it was made with, hence one per client (tests make many, on several event loops).
_SCRIPTS: weakref.WeakKeyDictionary[aioredis.Redis, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()


def connect(url: str, *, timeout: float = 3.0, **kwargs: Any) -> aioredis.Redis:
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 2.0),
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "none"
    options.update(kwargs)
    return cast(aioredis.Redis, aioredis.Redis.from_url(url, **options))


def arq_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    if url.startswith("rediss://"):
        settings.ssl = True
        settings.ssl_cert_reqs = "none"
    settings.conn_timeout = 2
    settings.conn_retries = 5
    settings.conn_retry_delay = 1
    return settings


async def job_pool(url: str) -> ArqRedis:
    """arq's pool, with the jobs' serializer: what worker processes and the CLI's workers use."""
    return await create_pool(arq_settings(url), job_serializer=serialize, job_deserializer=deserialize)


async def hgetall(redis: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    """`HGETALL` with the type redis-py's async stubs leave ambiguous."""
    return await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(key))


def typed(value: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py's async methods are typed `Awaitable[T] | T`; they always return an awaitable."""
    return cast(Awaitable[T], value)


def command(redis: aioredis.Redis) -> Callable[..., Awaitable[Any]]:
    """`execute_command`, typed (redis-py leaves it untyped)."""
    return cast(Callable[..., Awaitable[Any]], redis.execute_command)


def script(redis: aioredis.Redis, source: str) -> AsyncScript:
    """The Lua `source` as a script on `redis` (call it with `keys=`, `args=`), made once."""
    made = _SCRIPTS.setdefault(redis, {})
    found = made.get(source)
    if found is None:
        found = made[source] = redis.register_script(source)
    return found


async def run_script(redis: aioredis.Redis, source: str, keys: Sequence[Any], args: Iterable[Any]) -> Any:
    """Run `source` on `redis` by `EVALSHA`: Redis gets the body only when it does not know it
    (the first call, a restart, a flushed cache), not with every call as `EVAL` sends it."""
    return await script(redis, source)(keys=keys, args=args)


def redact_url(url: str) -> str:
    """A Redis URL for messages: its credentials replaced by `***`."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def redis_failure(url: str, exc: BaseException) -> str:
    """One line on why Redis could not be used: refused credentials, or no answer."""
    where = redact_url(url)
    if isinstance(exc, AuthenticationError | AuthorizationError) or "AUTH" in str(exc):
        return f"Redis at {where} refused the credentials in REDIS_URL: {exc}"
    return f"Redis at {where} is not answering: {exc}"
