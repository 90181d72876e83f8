"""`shopsync full-sync DOMAIN [--wait] [--force] [--with-orders] [--bulk]` and its progress bar.

`watch` is reusable (e.g. by `make run`): it follows a sync's record in Redis until it ends,
showing customers done, rate, errors and time left.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core import fullsync_control as control
from core.keys import Keys
from core.redis_conn import connect, redis_failure
from core.settings import Settings
from core.status import workers_alive
from mappings.installation import InstallationError
from shopsync.command_support import fail, wide_console
from shopsync.shops import load_installations, unknown_shop, warn_installations

POLL_S = 0.5


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.cancel:  # needs no installations file: the shop may be gone from it
        others = [
            f"--{n.replace('_', '-')}" for n in ("wait", "force", "with_orders", "bulk") if getattr(args, n)
        ]
        if others:
            return fail(f"--cancel takes no {', '.join(others)}", 2)
        return asyncio.run(_cancel(settings, args.domain.strip().lower()))
    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        return fail(str(exc))
    warn_installations(installations)
    shop = installations.get(args.domain)
    if shop is None:
        return fail(unknown_shop(args.domain, settings.shops_file, installations))
    bulk = bool(args.bulk or shop.sync.bulk_export)

    async def go() -> int:
        redis = connect(settings.redis_url)
        keys = Keys(settings.key_prefix)
        try:
            started = await control.start_full_sync(
                redis, keys, shop.domain, force=args.force, with_orders=args.with_orders, bulk=bulk
            )
            if not started.started:
                print(f"a full sync of {shop.domain} is already running: {started.sync_id}", file=sys.stderr)
            print(started.sync_id)
            if not args.wait:
                return 0
            if not await workers_alive(redis, keys):
                print("no worker is running: the sync waits in the queue until one starts", file=sys.stderr)
            record = await watch(redis, keys, started.sync_id)
            print(summary(record))
            return 0 if record.get("state") == control.FINISHED else 1
        except (RedisError, OSError) as exc:
            return fail(redis_failure(settings.redis_url, exc))
        finally:
            await redis.aclose()

    return asyncio.run(go())


async def _cancel(settings: Settings, domain: str) -> int:
    """End the shop's running sync, installed or not (a sync of a shop no longer in the file
    stays parked until the shop is back: this ends it for good)."""
    redis = connect(settings.redis_url)
    keys = Keys(settings.key_prefix)
    try:
        sync_id, refused = await control.cancel_sync(redis, keys, domain)
        if refused:
            return fail(refused)
        print(f"cancelled {sync_id}")
        return 0
    except (RedisError, OSError) as exc:
        return fail(redis_failure(settings.redis_url, exc))
    finally:
        await redis.aclose()


async def watch(
    redis: aioredis.Redis, keys: Keys, sync_id: str, console: Console | None = None
) -> dict[str, Any]:
    """Show a progress bar until the sync ends; its final record."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.1f}/s"),
        TextColumn("errors {task.fields[errors]}"),
        TextColumn("left {task.fields[left]}"),
        TimeElapsedColumn(),
        console=console or wide_console(stderr=True),
        transient=False,
    )
    with progress:
        task = progress.add_task(f"full sync {sync_id}", total=None, rate=0.0, errors=0, left="?")
        while True:
            record = await control.read_sync(redis, keys, sync_id)
            if record is None:
                raise RuntimeError(f"no full sync {sync_id!r} in Redis")
            p = control.Progress.of(record)
            progress.update(
                task,
                completed=p.done,
                total=p.total,
                rate=p.rate_per_s,
                errors=p.failed,
                left=_duration(p.eta_s),
            )
            if p.state in control.TERMINAL:
                return record
            await asyncio.sleep(POLL_S)


def summary(record: dict[str, Any]) -> str:
    counts = ", ".join(f"{name} {int(record.get(name) or 0)}" for name in control.COUNTERS)
    duration = record.get("duration_s")
    took = f" in {float(duration):.1f} s" if duration is not None else ""
    error = f": {record['error']}" if record.get("error") else ""
    return f"full sync {record.get('sync_id')} {record.get('state')}{took}{error} ({counts})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
