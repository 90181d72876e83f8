"""The operator's commands (`shopsync status|jobs|job|dead-letters|full-sync|resync|check|install`).

Each takes the parsed arguments and the settings, prints for people (rich tables) or for scripts
(`--json`), and returns the exit status: 0 success, 1 a reported failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from core import status as status_mod
from core.keys import Keys
from core.redis_conn import connect
from core.settings import Settings
from shopsync import jobview
from worker import deadletters

console = Console()


def _fail(message: str, code: int = 1) -> int:
    print(f"shopsync: {message}", file=sys.stderr)
    return code


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _with_redis(settings: Settings, action: Callable[[aioredis.Redis, Keys], Awaitable[int]]) -> int:
    async def go() -> int:
        redis = connect(settings.redis_url)
        try:
            return await action(redis, Keys(settings.key_prefix))
        except (RedisError, OSError) as exc:
            return _fail(f"Redis at {_redact(settings.redis_url)} is not answering: {exc}")
        finally:
            await redis.aclose()

    return asyncio.run(go())


def _redact(url: str) -> str:
    return url.split("@", 1)[1] if "@" in url else url


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


# --- status ----------------------------------------------------------------------------------


def status(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        report = await status_mod.collect(redis, keys, shop=args.domain)
        if args.json:
            _print_json(report)
        else:
            render_status(report)
        return 0

    return _with_redis(settings, action)


def render_status(report: dict[str, Any]) -> None:
    queues = Table(title="Queues")
    for col in ("queue", "queued", "deferred", "in progress", "oldest"):
        queues.add_column(col, justify="right" if col != "queue" else "left")
    for q in report["queues"]:
        queues.add_row(
            q["name"],
            str(q["queued"]),
            str(q["deferred"]),
            str(q["in_progress"]),
            f"{q['oldest_age_s']:.1f}s",
        )
    console.print(queues)
    console.print(
        f"workers alive: {len(report['workers_alive'])}  ·  failures last hour: {report['failures_last_hour']}"
        f"  ·  dead letters: {report['dead_letters']['total']} ({report['dead_letters']['last_hour']} last hour)"
    )
    if report["full_syncs"]:
        syncs = Table(title="Full syncs")
        for col in (
            "id",
            "shop",
            "state",
            "done / total",
            "synced",
            "unchanged",
            "skipped",
            "failed",
            "started",
        ):
            syncs.add_column(col)
        for s in report["full_syncs"]:
            syncs.add_row(
                str(s.get("sync_id", "")),
                str(s.get("shop", "")),
                str(s.get("state", "")),
                f"{s.get('seen', 0)} / {s.get('total', '?')}",
                str(s.get("synced", 0)),
                str(s.get("unchanged", 0)),
                str(s.get("skipped", 0)),
                str(s.get("failed", 0)),
                _ago(s.get("started_at")),
            )
        console.print(syncs)
    if report["limiters"]:
        limits = Table(title="Rate limiters")
        limits.add_column("bucket")
        limits.add_column("state")
        for name, value in sorted(report["limiters"].items()):
            limits.add_row(name, orjson.dumps(value).decode() if not isinstance(value, str) else value)
        console.print(limits)
    if report["recent_failures"]:
        fails = Table(title="Recent failures")
        for col in ("when", "job", "function", "try", "error"):
            fails.add_column(col)
        for f in report["recent_failures"][:10]:
            fails.add_row(_ago(f.get("at")), f["job_id"], f["function"], str(f["try"]), f["error"][:80])
        console.print(fails)


# --- jobs ------------------------------------------------------------------------------------


def jobs(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        if args.failed:
            rows = await jobview.failed_jobs(redis, keys, args.limit)
        else:
            rows = await jobview.queued_jobs(redis, keys, args.limit)
        if args.json:
            _print_json(rows)
            return 0
        table = Table(title="Failed jobs" if args.failed else "Jobs in the queues")
        cols = (
            ("job", "function", "status", "tries", "error", "when")
            if args.failed
            else ("job", "function", "shop", "topic", "status", "tries", "enqueued")
        )
        for col in cols:
            table.add_column(col)
        for r in rows:
            if args.failed:
                table.add_row(
                    r["job_id"], r["function"], r["status"], str(r["tries"]), r["error"][:70], _ago(r["at"])
                )
            else:
                table.add_row(
                    r["job_id"],
                    r["function"],
                    str(r["shop"] or "-"),
                    str(r["topic"] or (f"customer {r['customer_id']}" if r.get("customer_id") else "-")),
                    r["status"],
                    str(r["tries"]),
                    _ago(r["enqueued_at"]),
                )
        console.print(table)
        return 0

    return _with_redis(settings, action)


def job(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        detail = await jobview.job_detail(redis, keys, args.job_id)
        if detail is None:
            return _fail(
                f"no job {args.job_id!r} in Redis (finished jobs are kept 60 s, dead letters until purged)"
            )
        if args.json:
            _print_json(detail)
        else:
            for key, value in detail.items():
                text = (
                    orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
                    if isinstance(value, dict | list)
                    else value
                )
                console.print(f"[bold]{key}[/bold]: {text}")
        return 0

    return _with_redis(settings, action)


def dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "replay" and not (args.job_id or args.all):
        return _fail("dead-letters replay needs a job id or --all", 2)
    if args.action == "list" and (args.job_id or args.all):
        return _fail("dead-letters list takes no job id", 2)

    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        if args.action == "list":
            letters = await deadletters.list_letters(redis, keys)
            if args.json:
                _print_json([{**jobview.masked(vars_of(letter))} for letter in letters])
                return 0
            table = Table(title=f"Dead letters ({len(letters)})")
            for col in ("job", "function", "tries", "error", "when"):
                table.add_column(col)
            for letter in letters:
                table.add_row(
                    letter.job_id,
                    letter.function,
                    str(letter.tries),
                    letter.error[:80],
                    _ago(letter.failed_at),
                )
            console.print(table)
            return 0
        if args.action == "replay":
            ids = (
                [args.job_id]
                if args.job_id
                else [d.job_id for d in await deadletters.list_letters(redis, keys, 100_000)]
            )
            replayed = 0
            for job_id in ids:
                new_id = await deadletters.replay(redis, keys, job_id)
                if new_id is None:
                    return _fail(f"no dead letter {job_id!r}")
                replayed += 1
                print(f"replayed {job_id} as job {new_id}")
            print(f"{replayed} dead letter(s) replayed")
            return 0
        removed = await deadletters.purge(redis, keys, args.job_id)
        if args.job_id and not removed:
            return _fail(f"no dead letter {args.job_id!r}")
        print(f"{removed} dead letter(s) purged")
        return 0

    return _with_redis(settings, action)


def vars_of(letter: deadletters.DeadLetter) -> dict[str, Any]:
    return {
        "job_id": letter.job_id,
        "function": letter.function,
        "queue": letter.queue,
        "tries": letter.tries,
        "error_type": letter.error_type,
        "error": letter.error,
        "failed_at": letter.failed_at,
        "args": letter.args,
    }


# --- full sync -------------------------------------------------------------------------------


def full_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Start a full sync (or find the running one), print its id, optionally watch it."""
    from shopsync.fullsync_cli import run

    return run(args, settings)


# --- resync ----------------------------------------------------------------------------------


def resync(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch one customer from Shopify now and run the same sync a webhook would."""
    from mappings.installation import InstallationError
    from shopsync.shops import load_installations

    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        return _fail(str(exc))
    shop = installations.get(args.domain)
    if shop is None:
        return _fail(f"no shop {args.domain!r} in {settings.shops_file}")

    async def go() -> int:
        from arq.connections import create_pool

        from core.jobs import deserialize, serialize
        from core.redis_conn import arq_settings
        from worker.context import WorkerContext
        from worker.errors import ApiError
        from worker.sync import Update, submit

        pool = await create_pool(
            arq_settings(settings.redis_url), job_serializer=serialize, job_deserializer=deserialize
        )
        app = WorkerContext(
            settings=settings, installations=installations, redis=pool, keys=Keys(settings.key_prefix)
        )
        try:
            try:
                customer = await app.shopify(shop).get_customer(args.customer_id)
            except ApiError as exc:
                return _fail(f"Shopify: {exc}")
            if customer is None:
                return _fail(f"customer {args.customer_id} does not exist in {shop.domain}")
            update = Update(kind="rest", payload=customer, received_at=time.time(), source="resync")
            try:
                outcome = await submit(app, shop, f"resync:{args.customer_id}:{time.time_ns()}", update)
            except ApiError as exc:
                return _fail(f"APSIS: {exc}")
            print(f"customer {args.customer_id}: {outcome}")
            return 0
        finally:
            await app.close()
            await pool.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, OSError) as exc:
        return _fail(f"Redis at {_redact(settings.redis_url)} is not answering: {exc}")


# --- check and install -----------------------------------------------------------------------


def check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate an installation against Shopify and APSIS One; one line per problem, exit 1 if any."""
    return _installation_command(settings, args.domain, args.address, install=False, as_json=args.json)


def install(args: argparse.Namespace, settings: Settings) -> int:
    """Register the webhook subscriptions at Shopify for --address, mark the shop installed, check."""
    if not args.address.startswith(("https://", "http://")):
        return _fail(f"--address must be an http(s) URL, not {args.address!r}", 2)
    return _installation_command(
        settings, args.domain, args.address, install=True, as_json=getattr(args, "json", False)
    )


def _installation_command(
    settings: Settings, domain: str, address: str | None, *, install: bool, as_json: bool
) -> int:
    from mappings.installation import InstallationError
    from shopsync import installcheck
    from shopsync.shops import load_installations

    try:
        installations = load_installations(settings.shops_file)
    except InstallationError as exc:
        return _fail(str(exc))
    shop = installations.get(domain)
    if shop is None:
        known = ", ".join(sorted(installations.shops)) or "none"
        return _fail(f"no shop {domain!r} in {settings.shops_file} (shops: {known})")

    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        clients = installcheck.Clients.build(shop, redis, keys)
        output: dict[str, Any] = {}
        try:
            if install:
                assert address is not None
                result = await installcheck.install_webhooks(shop, clients.shopify, address)
                was_uninstalled = await installcheck.mark_installed(redis, keys, shop.domain)
                output["install"] = {**result.to_json(), "was_uninstalled": was_uninstalled}
                if not as_json:
                    _print_install(shop.domain, address, result, was_uninstalled)
            report = await installcheck.check(shop, clients, address)
        finally:
            await clients.close()
        output.update(report.to_json())
        problems = report.problems + output.get("install", {}).get("problems", [])
        if as_json:
            _print_json({**output, "ok": not problems})
        else:
            _print_report(report, problems)
        return 1 if problems else 0

    return _with_redis(settings, action)


def _print_install(domain: str, address: str, result: Any, was_uninstalled: bool) -> None:
    print(f"{domain}: webhook subscriptions at {address}")
    print(
        f"  kept {len(result.kept)}, created {len(result.created)}, replaced {len(result.replaced)}"
        f" (stale address){', problems ' + str(len(result.problems)) if result.problems else ''}"
    )
    if was_uninstalled:
        print("  the shop was marked uninstalled: it syncs again")


def _print_report(report: Any, problems: list[str]) -> None:
    for line in report.checked:
        print(f"ok    {line}")
    for line in problems:
        print(f"FIX   {line}")
    if problems:
        print(f"{report.domain}: {len(problems)} problem(s) to fix")
    else:
        print(f"{report.domain}: installation OK")
