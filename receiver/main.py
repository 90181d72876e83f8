"""`shopsync receiver`: load and validate the installations, then serve on $PORT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import sys
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from core.config import ConfigFileError, read_config_file
from core.eventloop import use_uvloop
from core.keys import Keys
from core.redis_conn import connect
from core.reload import FileWatcher
from core.settings import Settings, default_shops_file_warning
from mappings.installation import InstallationError
from mappings.installation_parse import parse_installations_toml
from receiver.app import create_app
from receiver.appkeys import INSTALLATIONS

log = structlog.get_logger("receiver")


def run(settings: Settings, host: str = "0.0.0.0") -> int:
    try:
        path = settings.shops_file
        installations = parse_installations_toml(read_config_file(path), os.environ, source=path)
    except (ConfigFileError, InstallationError) as exc:
        print(f"shopsync receiver: {exc}", file=sys.stderr)
        return 1
    use_uvloop()

    async def build() -> web.Application:
        redis = connect(settings.redis_url, timeout=3.0)
        app = create_app(
            installations, redis, keys=Keys(settings.key_prefix), admin_token=settings.admin_token
        )
        app.cleanup_ctx.append(watching(settings.shops_file))
        _tune_gc()
        return app

    log.info("receiver_starting", port=settings.port, shops=sorted(installations.shops))
    for warning in installations.warnings:
        log.warning("installations_warning", detail=warning)
    if default_file := default_shops_file_warning(settings):
        log.warning("installations_default", detail=default_file)
    # run_app stops accepting on SIGTERM/SIGINT, lets in-flight requests finish (up to the timeout),
    # then runs the cleanup that drains the enqueuer and closes the Redis pool.
    try:
        web.run_app(build(), host=host, port=settings.port, access_log=None, shutdown_timeout=10, print=None)
    except OSError as exc:
        if exc.errno not in _CANNOT_LISTEN:
            raise
        print(f"shopsync receiver: cannot listen on {host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    log.info("receiver_stopped")
    return 0


_CANNOT_LISTEN = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def watching(path: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """Reload the installations file when it changes or on SIGHUP (core/reload.py), for as long
    as the application runs: shops are added or removed without a restart."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        live = app[INSTALLATIONS]

        async def reload() -> None:
            live.replace(parse_installations_toml(read_config_file(path), os.environ, source=path))

        watcher = FileWatcher(path, reload)
        watcher.install_sighup()
        task = asyncio.create_task(watcher.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def _tune_gc() -> None:
    # A webhook allocates only short-lived objects that reference counting frees; the cycle
    # collector mostly re-walks what start-up built (modules, installations, the app). Freezing
    # those and collecting the young generation less often took its share of a webhook's CPU
    # from about 6 % to under 2 % (perf, `make bench BENCH_ARGS=receiver`).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
