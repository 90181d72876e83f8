"""Redis connections from a URL, for redis-py and for arq, with Heroku's `rediss://` quirk handled.

Heroku Redis serves TLS with a self-signed certificate; neither redis-py's `from_url` nor arq's
`RedisSettings.from_dsn` turns certificate checking off, so both are done here for `rediss://`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from arq.connections import RedisSettings

T = TypeVar("T")


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


async def hgetall(redis: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    """`HGETALL` with the type redis-py's async stubs leave ambiguous."""
    return await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(key))


def typed(value: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py's async methods are typed `Awaitable[T] | T`; they always return an awaitable."""
    return cast(Awaitable[T], value)


def command(redis: aioredis.Redis) -> Callable[..., Awaitable[Any]]:
    """`execute_command`, typed (redis-py leaves it untyped)."""
    return cast(Callable[..., Awaitable[Any]], redis.execute_command)
