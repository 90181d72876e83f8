"""What the operator's commands share: the console, failures, JSON output and a Redis connection.

A failure is one line on stderr and an exit status (1 a reported failure, 2 bad usage); `--json`
output is indented orjson on stdout; `with_redis` runs one async action against the configured
Redis and turns a Redis that does not answer into a failure (without the URL's credentials).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console

from core.keys import Keys
from core.redis_conn import connect, redis_failure
from core.settings import Settings


def wide_console(*, stderr: bool = False) -> Console:
    """A rich console that, into a pipe or a file (`shopsync status | less`, `heroku run` logs,
    `make run > log`), is 160 columns wide unless COLUMNS says otherwise: at rich's default 80 the
    per-shop table and the progress bar's columns were cut."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=160 if wide else None)


console = wide_console()


def fail(message: str, code: int = 1) -> int:
    """Print `shopsync: message` on stderr; the exit status `code`."""
    print(f"shopsync: {message}", file=sys.stderr)
    return code


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def with_redis(settings: Settings, action: Callable[[aioredis.Redis, Keys], Awaitable[int]]) -> int:
    """Run `action` with a Redis connection and the configured keys; its exit status."""

    async def go() -> int:
        redis = connect(settings.redis_url)
        try:
            return await action(redis, Keys(settings.key_prefix))
        except (RedisError, OSError) as exc:
            return fail(redis_failure(settings.redis_url, exc))
        finally:
            await redis.aclose()

    return asyncio.run(go())


def ago(ts: float | None) -> str:
    """How long ago the Unix time `ts` was, for people ("42s ago", "5m ago", "1.5h ago")."""
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
