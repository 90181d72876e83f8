"""`shopsync sandbox`: the simulated Shopify store and APSIS One account, together, until Ctrl-C.

`mappings/demo.toml` is the installation that points at them with their default credentials
(store on :8081, APSIS on :8082).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from sandbox.apsis.server import ApsisSandbox
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store


async def serve(customers: int, seed: int, shopify_port: int, apsis_port: int, activity: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    store = Store(seed=seed, size=customers)
    async with (
        ApsisSandbox(port=apsis_port) as apsis,
        ShopifySandbox(store, port=shopify_port, activity_rate=activity) as shopify,
    ):
        print(f"Shopify store  {shopify.url}  ({customers} customers, seed {seed}, domain {store.domain})")
        print(f"APSIS account  {apsis.url}")
        print(f"control APIs   {shopify.url}/_sandbox/   {apsis.url}/_sandbox/")
        print("installation   mappings/demo.toml points here; Ctrl-C stops", flush=True)
        await stop.wait()


def run_from_args(args: argparse.Namespace) -> int:
    if args.customers < 0 or args.activity < 0:
        print("shopsync sandbox: --customers and --activity must not be negative")
        return 2
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(serve(args.customers, args.seed, args.shopify_port, args.apsis_port, args.activity))
    except OSError as exc:
        print(f"shopsync sandbox: cannot listen: {exc.strerror or exc}")
        return 1
    return 0
