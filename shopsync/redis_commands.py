"""The commands that read what is in Redis: `shopsync status|jobs|job|dead-letters`.

Queues, workers, failures, full syncs and limiters (`status`), the jobs in the queues or failed
(`jobs`), one job (`job`), and the dead letters, which `dead-letters` also replays or purges. Each
takes the parsed arguments and the settings, prints for people (rich tables) or for scripts
(`--json`), and returns the exit status: 0 success, 1 a reported failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from rich.table import Table

from core import status as status_mod
from core.keys import Keys
from core.logging import scrub_text
from core.settings import Settings
from mappings.installation import InstallationError
from shopsync import jobview
from shopsync.command_support import ago, console, fail, print_json, with_redis
from shopsync.shops import load_installations
from worker import deadletters

# --- status ----------------------------------------------------------------------------------


def status(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        shops = _shops(settings)
        if args.domain and shops is not None and args.domain not in shops:
            known = ", ".join(sorted(shops)) or "none"
            warn(f"{args.domain} is not in {settings.shops_file} (shops: {known}); what Redis holds for it:")
        shops = shops or {}
        report = await status_mod.collect(redis, keys, shop=args.domain, shops=shops, accounts=shops)
        if args.json:
            print_json(report)
        else:
            render_status(report)
        return 0

    return with_redis(settings, action)


def _shops(settings: Settings) -> dict[str, str] | None:
    """The installations file's shops and their APSIS accounts, for the per-shop lines; None (and
    a line on stderr: the rest of the status is Redis's and still shown) when it cannot be read."""
    try:
        shops = load_installations(settings.shops_file).shops
    except InstallationError as exc:
        warn(f"no per-shop lines: {exc}")
        return None
    return {domain: shop.apsis.client_id for domain, shop in shops.items()}


def warn(message: str) -> None:
    print(f"shopsync status: {message}", file=sys.stderr)


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
                f"{s.get('state', '')} (parked: shop not installed)"
                if s.get("parked")
                else str(s.get("state", "")),
                f"{s.get('seen', 0)} / {s.get('total', '?')}",
                str(s.get("synced", 0)),
                str(s.get("unchanged", 0)),
                str(s.get("skipped", 0)),
                str(s.get("failed", 0)),
                ago(s.get("started_at")),
            )
        console.print(syncs)
        for s in report["full_syncs"]:
            phase = s.get("import_phase")
            if phase:  # a full sync through APSIS profile imports
                console.print(
                    f"import phase of {s.get('sync_id')}: files {phase['files_built']} built, "
                    f"{phase['files_uploaded']} uploaded, {phase['files_processing']} processing, "
                    f"{phase['files_completed']} completed, {phase['files_failed']} failed"
                    f"{' (verified)' if phase['verified'] else ''}  ·  rows {phase['rows']} imported, "
                    f"{phase['rows_per_profile']} per profile, {phase['rows_resent']} re-sent, "
                    f"{phase['rows_refused']} refused"
                )
    if report["limiters"]:
        limits = Table(title="Rate limiters")
        for col in ("bucket", "level / burst", "rate", "wait", "last acquire"):
            limits.add_column(col, justify="left" if col == "bucket" else "right")
        for name, value in sorted(report["limiters"].items()):
            limits.add_row(name, *_limiter_cells(value))
        console.print(limits)
    suppressed = {shop: n for shop, n in report.get("suppressed_profiles", {}).items() if n}
    for shop, n in sorted(suppressed.items()):
        console.print(f"{shop}: {n} profile(s) with an address APSIS suppresses (no opt-in reaches them)")
    for shop, audit in sorted(report.get("audits", {}).items()):
        drift = sum(int(audit.get(k, 0)) for k in ("missing", "extra", "attribute", "consent"))
        counts = ", ".join(f"{k} {audit.get(k, 0)}" for k in ("missing", "extra", "attribute", "consent"))
        colour = "red" if drift else "green"
        console.print(
            f"{shop}: last audit {ago(audit.get('at'))}, {audit.get('customers', 0)} customers,"
            f" [{colour}]{drift} difference(s)[/] ({counts})"
        )
    for shop, reason in sorted(report.get("needs_approval", {}).items()):
        console.print(
            f"[bold red]{shop}: needs approval[/] ({reason}): its jobs wait; approve the app again"
            f" (oauth: open /auth/install?shop={shop} on the receiver)"
        )
    render_shops(report.get("shops", {}))
    if report["recent_failures"]:
        fails = Table(title="Recent failures")
        for col in ("when", "job", "function", "try", "error"):
            fails.add_column(col)
        for f in report["recent_failures"][:10]:
            fails.add_row(ago(f.get("at")), f["job_id"], f["function"], str(f["try"]), f["error"][:80])
        console.print(fails)


def _pace(value: dict[str, Any]) -> str:
    """A bucket's rate, per second or (a token bucket's few a minute) per minute."""
    rate = float(value.get("rate_per_s", 0))
    return f"{rate:.0f}/s" if rate >= 1 else f"{rate * 60:.0f}/min"


def _limiter_cells(value: Any) -> tuple[str, str, str, str]:
    """A bucket's snapshot (worker/ratelimit/scripts.py) as an operator reads it: how full, its
    pace, the wait at its last acquire and when that was."""
    if not isinstance(value, dict):
        return str(value), "", "", ""
    return (
        f"{float(value.get('level', 0)):.1f} / {float(value.get('burst', 0)):g}",
        _pace(value),
        f"{float(value.get('wait_s', 0)):.2f}s",
        ago(value.get("at")),
    )


def render_shops(shops: dict[str, Any]) -> None:
    """One line per shop: backlog, rate-limit use, backoff and last error (core/shop_status.py)."""
    if not shops:
        return
    # Every domain ends in .myshopify.com: the handle alone keeps the table readable at 80 columns.
    suffix = ".myshopify.com"
    handles = {name: name.removesuffix(suffix) for name in shops}
    table = Table(title=f"Shops (*{suffix})")
    table.add_column("shop", no_wrap=True, min_width=min(30, max(len(h) for h in handles.values())))
    for col in (
        "weight",
        "real-time",
        "fs batches",
        "fs left",
        "held",
        "limits",
        "backoff",
        "last error",
    ):
        table.add_column(col)
    for name, s in sorted(shops.items()):
        b = s["backlog"]
        limits = ", ".join(
            f"{bucket.split(':', 1)[0]} {float(v.get('level', 0)):.0f}/{float(v.get('burst', 0)):.0f}"
            f" @{_pace(v)}"
            for bucket, v in sorted(s["rate_limits"].items())
            if isinstance(v, dict)
        )
        backoff = s.get("backoff") or {}
        error = s.get("last_error") or {}
        table.add_row(
            handles[name] if s.get("in_installations") else f"{handles[name]} (removed: parked)",
            str(s.get("weight") or "-"),
            f"{b['realtime'] + b['apply']}{'+' if b['sampled'] else ''}",
            str(b["fullsync_batches_ready"]),
            "-" if b["fullsync_customers_left"] is None else str(b["fullsync_customers_left"]),
            str(b["held"]),
            limits or "-",
            f"{float(backoff['until']) - time.time():.0f}s more: {backoff.get('reason', '')}"
            if backoff.get("active")
            else "-",
            f"{ago(error.get('at'))}: {error.get('api') or error.get('job', '')} {error.get('status') or error.get('error', '')}"[
                :70
            ]
            if error
            else "-",
        )
    console.print(table)


# --- jobs ------------------------------------------------------------------------------------


def jobs(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        if args.failed:
            rows = await jobview.failed_jobs(redis, keys, args.limit)
        else:
            rows = await jobview.queued_jobs(redis, keys, args.limit)
        if args.json:
            print_json(rows)
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
                    r["job_id"], r["function"], r["status"], str(r["tries"]), r["error"][:70], ago(r["at"])
                )
            else:
                table.add_row(
                    r["job_id"],
                    r["function"],
                    str(r["shop"] or "-"),
                    str(r["topic"] or (f"customer {r['customer_id']}" if r.get("customer_id") else "-")),
                    r["status"],
                    str(r["tries"]),
                    ago(r["enqueued_at"]),
                )
        console.print(table)
        return 0

    return with_redis(settings, action)


def job(args: argparse.Namespace, settings: Settings) -> int:
    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        detail = await jobview.job_detail(redis, keys, args.job_id)
        if detail is None:
            return fail(
                f"no job {args.job_id!r} in Redis (a finished real-time job is kept 60 s, a full-sync or audit"
                " job not at all: see `shopsync status`; dead letters until purged)"
            )
        if args.json:
            print_json(detail)
        else:
            for key, value in detail.items():
                text = (
                    orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
                    if isinstance(value, dict | list)
                    else value
                )
                console.print(f"[bold]{key}[/bold]: {text}")
        return 0

    return with_redis(settings, action)


def dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "replay" and not (args.job_id or args.all):
        return fail("dead-letters replay needs a job id or --all", 2)
    if args.job_id and args.all:
        return fail("dead-letters replay takes a job id or --all, not both", 2)
    if args.action == "list" and (args.job_id or args.all):
        return fail("dead-letters list takes no job id", 2)

    async def action(redis: aioredis.Redis, keys: Keys) -> int:
        if args.action == "list":
            letters = await deadletters.list_letters(redis, keys)
            if args.json:
                print_json([{**jobview.masked(vars_of(letter))} for letter in letters])
                return 0
            table = Table(title=f"Dead letters ({len(letters)})")
            for col in ("job", "function", "tries", "error", "when"):
                table.add_column(col)
            for letter in letters:
                table.add_row(
                    letter.job_id,
                    letter.function,
                    str(letter.tries),
                    scrub_text(letter.error)[:80],
                    ago(letter.failed_at),
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
                    return fail(f"no dead letter {job_id!r}")
                replayed += 1
                print(f"replayed {job_id} as job {new_id}")
            print(f"{replayed} dead letter(s) replayed")
            return 0
        removed = await deadletters.purge(redis, keys, args.job_id)
        if args.job_id and not removed:
            return fail(f"no dead letter {args.job_id!r}")
        print(f"{removed} dead letter(s) purged")
        return 0

    return with_redis(settings, action)


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
