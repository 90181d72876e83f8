"""What the commands that run worker code in the shell share: the shop named on the command line,
read from the installations file, and a worker context (arq pool, API clients) to run one action in.

`load_shop` raises `CommandFailed` with the one line to print; `with_worker` turns a Redis that
does not answer into that line too (without the URL's credentials), and closes everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from core.keys import Keys
from core.redis_conn import redis_failure
from core.settings import Settings
from mappings.installation import InstallationError, Installations, Shop
from shopsync.shops import load_installations, unknown_shop, warn_installations

if TYPE_CHECKING:
    from worker.context import WorkerContext


class CommandFailed(Exception):
    """A failure to report as one line (`shopsync: ...`) and exit status 1."""


def load_shop(settings: Settings, domain: str, *, warn: bool = True) -> tuple[Installations, Shop]:
    """The installations and the shop `domain`; CommandFailed when the file or the shop is wrong."""
    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        raise CommandFailed(str(exc)) from None
    if warn:
        warn_installations(installations)
    shop = installations.get(domain)
    if shop is None:
        raise CommandFailed(unknown_shop(domain, settings.shops_file, installations))
    return installations, shop


def with_worker(
    settings: Settings, installations: Installations, action: Callable[[WorkerContext], Awaitable[int]]
) -> int:
    """Run `action` in a worker context as a worker process has it; its exit status."""
    from core.redis_conn import job_pool
    from worker.context import WorkerContext

    async def go() -> int:
        pool = await job_pool(settings.redis_url)
        app = WorkerContext(
            settings=settings, installations=installations, redis=pool, keys=Keys(settings.key_prefix)
        )
        try:
            return await action(app)
        finally:
            await app.close()
            await pool.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, OSError) as exc:
        raise CommandFailed(redis_failure(settings.redis_url, exc)) from None
