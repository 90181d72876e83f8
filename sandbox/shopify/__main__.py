"""Serve the sandbox Shopify store alone:
`python -m sandbox.shopify [--port 8081] [--customers N] [--seed S] [--anchor UNIX_S]
[--activity PER_S] [--plan P] [--no-limits]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from datetime import UTC, datetime

from sandbox.shopify.ratelimit import PLAN_RESTORE_RATES
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store


def store_of(args: argparse.Namespace) -> Store:
    anchor = None if args.anchor is None else datetime.fromtimestamp(args.anchor, UTC)
    store = Store(seed=args.seed, size=args.customers, anchor=anchor)
    store.rate_limit.plan = args.plan
    if args.no_limits:
        store.rate_limit.graphql_maximum = 10.0**9
    return store


async def serve(args: argparse.Namespace) -> None:
    store = store_of(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with ShopifySandbox(store, host=args.host, port=args.port, activity_rate=args.activity) as sandbox:
        if args.print_url:
            print(sandbox.url, flush=True)  # benchmarks read this to learn the port
        await stop.wait()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox.shopify", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--anchor",
        type=int,
        default=None,
        help="where the generated history ends, in seconds since the epoch (default: today, "
        "midnight UTC); a copy of the store made elsewhere with the same seed and anchor is equal",
    )
    p.add_argument("--activity", type=float, default=0.0, help="changes per second (0: none)")
    p.add_argument(
        "--plan",
        choices=sorted(PLAN_RESTORE_RATES),
        default="standard",
        help="the store's Shopify plan: its GraphQL restore rate (points/s) and bucket",
    )
    p.add_argument("--no-limits", action="store_true", help="disable the GraphQL cost throttle")
    p.add_argument("--print-url", action="store_true", help="print the base URL once listening")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
