"""`shopsync`: the processes and the operator's commands.

Exit status: 0 on success, 1 on a failure it reports, 2 on bad usage. Errors are one line on stderr.
Each command's module is imported only when that command runs: `redis_commands` (status, jobs,
job, dead-letters), `shop_commands` (resync, check, install), `fullsync_cli` (full-sync),
`app_config` (app-config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from core.logging import configure_logging
from core.settings import SettingError, Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, exit 2: usage mistakes are not failures of the service.
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shopsync", description="Shopify -> APSIS One sync")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("receiver", help="run the webhook receiver on $PORT")
    worker = sub.add_parser("worker", help="run a worker process (every queue by default)")
    worker.add_argument(
        "--queue",
        choices=["all", "realtime", "fullsync", "audit"],
        default="all",
        help="realtime also serves apply jobs; fullsync also serves scheduled audits",
    )
    worker.add_argument("--burst", action="store_true", help="stop once the queues are empty")

    fs = sub.add_parser("full-sync", help="enqueue a full sync of a shop and print its id")
    fs.add_argument("domain")
    fs.add_argument("--wait", action="store_true", help="show a progress bar until it is done")
    fs.add_argument("--force", action="store_true", help="rewrite every profile, even unchanged ones")
    fs.add_argument("--with-orders", action="store_true", help="also send past orders as purchase events")
    fs.add_argument("--bulk", action="store_true", help="export customers with a GraphQL bulk operation")
    fs.add_argument(
        "--cancel", action="store_true", help="end the shop's running full sync (what it wrote stays)"
    )

    rs = sub.add_parser("resync", help="sync one customer now from Shopify's current state")
    rs.add_argument("domain")
    rs.add_argument("customer_id", type=int)

    au = sub.add_parser("audit", help="compare APSIS with the store; exit 1 on drift")
    au.add_argument("domain")
    au.add_argument("--json", action="store_true")
    au.add_argument("--repair", action="store_true", help="enqueue sync jobs for the differing customers")
    au.add_argument("--examples", type=int, default=10, metavar="N", help="examples per kind (default 10)")
    au.add_argument(
        "--apsis-read",
        choices=("auto", "reports", "profiles"),
        default="auto",
        help="read APSIS through consent report exports or one profile at a time (default auto)",
    )

    st = sub.add_parser("status", help="queues, workers, failures, dead letters, full syncs, limiters")
    st.add_argument("domain", nargs="?")
    st.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="list jobs in Redis")
    which = jobs.add_mutually_exclusive_group()
    which.add_argument("--queued", action="store_true", help="queued and running jobs (the default)")
    which.add_argument("--failed", action="store_true", help="failures of the last hour and dead letters")
    jobs.add_argument("--json", action="store_true")
    jobs.add_argument("--limit", type=_positive, default=50, help="at most this many a queue (default 50)")

    job = sub.add_parser("job", help="show one job")
    job.add_argument("job_id")
    job.add_argument("--json", action="store_true")

    dl = sub.add_parser("dead-letters", help="jobs that ran out of tries")
    dl.add_argument("action", choices=["list", "replay", "purge"])
    dl.add_argument("job_id", nargs="?")
    dl.add_argument("--all", action="store_true", help="replay every dead letter")
    dl.add_argument("--json", action="store_true")

    check = sub.add_parser("check", help="validate an installation against Shopify and APSIS")
    check.add_argument("domain")
    check.add_argument("--json", action="store_true")
    check.add_argument("--address", help="the webhook address the subscriptions must point at")

    install = sub.add_parser("install", help="register the webhook subscriptions, then check")
    install.add_argument("domain")
    install.add_argument("--address", required=True, help="public URL of POST /webhooks/shopify")
    install.add_argument("--json", action="store_true")

    ac = sub.add_parser("app-config", help="print the shopify.app.toml fragment for a Dev Dashboard app")
    ac.add_argument("domain")
    ac.add_argument("--address", required=True, help="public URL of POST /webhooks/shopify")

    sb = sub.add_parser("sandbox", help="run the Shopify and APSIS One simulators")
    sb.add_argument("--customers", type=int, default=2000)
    sb.add_argument("--seed", type=int, default=1)
    sb.add_argument("--shopify-port", type=int, default=8081)
    sb.add_argument("--apsis-port", type=int, default=8082)
    sb.add_argument("--activity", type=float, default=0.0, metavar="PER_S", help="changes per second")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"shopsync: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        # Modules read their tuning variables (SHOPSYNC_...) as they load.
        handler = _COMMANDS[args.command]()
        return handler(args, settings)
    except SettingError as exc:
        print(f"shopsync: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _receiver() -> Callable[[argparse.Namespace, Settings], int]:
    from receiver.main import run

    return lambda args, settings: run(settings)


def _worker() -> Callable[[argparse.Namespace, Settings], int]:
    from worker.main import run

    return lambda args, settings: run(settings, queue=args.queue, burst=args.burst)


def _command(module: str, name: str) -> Callable[[], Callable[[argparse.Namespace, Settings], int]]:
    """A loader of the function `name` of `module`, imported only when that command runs."""

    def load() -> Callable[[argparse.Namespace, Settings], int]:
        handler: Callable[[argparse.Namespace, Settings], int] = getattr(
            importlib.import_module(module), name
        )
        return handler

    return load


def _sandbox() -> Callable[[argparse.Namespace, Settings], int]:
    from sandbox.runner import run_from_args

    return lambda args, settings: run_from_args(args)


_COMMANDS: dict[str, Callable[[], Callable[[argparse.Namespace, Settings], int]]] = {
    "receiver": _receiver,
    "worker": _worker,
    "full-sync": _command("shopsync.fullsync_cli", "run"),
    "resync": _command("shopsync.shop_commands", "resync"),
    "audit": _command("shopsync.audit_command", "run"),
    "status": _command("shopsync.redis_commands", "status"),
    "jobs": _command("shopsync.redis_commands", "jobs"),
    "job": _command("shopsync.redis_commands", "job"),
    "dead-letters": _command("shopsync.redis_commands", "dead_letters"),
    "check": _command("shopsync.shop_commands", "check"),
    "install": _command("shopsync.shop_commands", "install"),
    "app-config": _command("shopsync.app_config", "run"),
    "sandbox": _sandbox,
}


if __name__ == "__main__":
    sys.exit(main())
