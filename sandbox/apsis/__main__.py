"""Serve the sandbox APSIS One account alone: `python -m sandbox.apsis [--port 8082] [--no-limits]
[--client-id ID]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from sandbox.apsis.account import DEFAULT_CLIENT_ID, default_account
from sandbox.apsis.server import ApsisSandbox


async def serve(
    host: str, port: int, limits: bool, ready_line: bool, client_id: str = DEFAULT_CLIENT_ID
) -> None:
    account = default_account(client_id=client_id)
    if not limits:
        account.disable_rate_limits()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with ApsisSandbox(account, host=host, port=port) as sandbox:
        if ready_line:
            print(sandbox.url, flush=True)  # the bench reads this to learn the port
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.apsis", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082, help="0 picks a free port")
    parser.add_argument("--no-limits", action="store_true", help="disable every rate limit")
    parser.add_argument(
        "--client-id",
        default=DEFAULT_CLIENT_ID,
        help="the account's API client id (two accounts side by side)",
    )
    parser.add_argument("--print-url", action="store_true", help="print the base URL once listening")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
    asyncio.run(serve(args.host, args.port, not args.no_limits, args.print_url, args.client_id))


if __name__ == "__main__":
    main()
