"""Shopify sandbox throughput: GraphQL customer pages/s, single reads/s, signed webhook deliveries/s.

The store runs alone in a subprocess (`python -m sandbox.shopify --no-limits`, 100,000 customers),
pinned to one core where the OS allows it; concurrent aiohttp clients in this process send the
worker's own GraphQL documents (`worker.shopify_queries`, 2026-10): the customers page at the
largest size its cost allows (Shopify's single-query maximum of 1,000 points) from random
`id:>N` starts, and the single customer by global id. Webhook delivery is measured in-process: N
mutations to one subscription pointing at a bare receiver, timed until every delivery has settled.

    python -m bench.bench_shopify_sandbox [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.data import CUSTOMER_BASE
from worker.shopify_cost import page_size, per_node_cost
from worker.shopify_queries import customer_documents

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = 100_000
HEADERS = {"X-Shopify-Access-Token": "shpat_sandbox_token"}
VERSION = "2026-10"
GRAPHQL = f"/admin/api/{VERSION}/graphql.json"
DOCUMENTS = customer_documents(VERSION)
PAGE_SIZE = page_size(per_node_cost(DOCUMENTS.customers, {"after": None, "query": None}))


def _cores() -> tuple[set[int] | None, set[int] | None]:
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[0]}, set(cores[1:])


@contextlib.contextmanager
def _sandbox_process(core: set[int] | None) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.shopify", "--port", "0", "--no-limits", "--print-url",
         "--customers", str(CUSTOMERS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        if core is not None:
            os.sched_setaffinity(proc.pid, core)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the sandbox did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2)


async def _load(url: str, seconds: float, connections: int, pages: bool) -> dict[str, Any]:
    latencies: list[float] = []
    records = 0
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)
    async with aiohttp.ClientSession(
        url, headers=HEADERS, connector=aiohttp.TCPConnector(limit=connections)
    ) as s:

        async def worker() -> None:
            nonlocal records, errors
            while time.perf_counter() < deadline:
                start = CUSTOMER_BASE + rng.randrange(CUSTOMERS - 300)
                if pages:
                    body = {
                        "query": DOCUMENTS.customers,
                        "variables": {"first": PAGE_SIZE, "after": None, "query": f"id:>{start}"},
                    }
                else:
                    body = {
                        "query": DOCUMENTS.customer,
                        "variables": {"id": f"gid://shopify/Customer/{start}"},
                    }
                t0 = time.perf_counter()
                async with s.post(GRAPHQL, json=body) as resp:
                    answer = await resp.json()
                    if resp.status != 200 or "errors" in answer:
                        errors += 1
                latencies.append(time.perf_counter() - t0)
                records += PAGE_SIZE if pages else 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        duration = time.perf_counter() - started
    return {
        "requests_per_s": round(len(latencies) / duration, 1),
        "customers_per_s": round(records / duration, 1),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "errors": errors,
    }


async def _webhooks(count: int) -> dict[str, Any]:
    received = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    store = Store(size=10_000)
    try:
        async with ShopifySandbox(store):
            store.add_subscription("customers/update", address, "2024-10")  # a REST payload version
            ids = list(store.customer_ids())
            started = time.perf_counter()
            for n in range(count):
                await store.update_customer(ids[n % len(ids)], note=f"bench {n}")
            queued = time.perf_counter() - started
            await store.deliverer.settled()
            duration = time.perf_counter() - started
    finally:
        await runner.cleanup()
    return {
        "mutations_per_s": round(count / queued, 1),
        "deliveries_per_s": round(received / duration, 1),
        "delivered": received,
    }


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    server_core, load_cores = _cores()
    if load_cores is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, load_cores)
    with _sandbox_process(server_core) as url:
        pages = asyncio.run(_load(url, seconds, 8, pages=True))
        singles = asyncio.run(_load(url, seconds, 32, pages=False))
    hooks = asyncio.run(_webhooks(500 if quick else 3000))
    return {
        "name": "shopify_sandbox",
        "customers": CUSTOMERS,
        "server_pinned_to_one_core": server_core is not None,
        "graphql_version": VERSION,
        "page_size": PAGE_SIZE,
        "page_requests_per_s": pages["requests_per_s"],
        "page_customers_per_s": pages["customers_per_s"],
        "page_p50_ms": pages["p50_ms"],
        "page_p99_ms": pages["p99_ms"],
        "single_customer_requests_per_s": singles["requests_per_s"],
        "single_customer_p50_ms": singles["p50_ms"],
        "single_customer_p99_ms": singles["p99_ms"],
        "webhook_mutations_per_s": hooks["mutations_per_s"],
        "webhook_deliveries_per_s": hooks["deliveries_per_s"],
        "errors": pages["errors"] + singles["errors"],
        "details": {"pages": pages, "singles": singles, "webhooks": hooks},
    }


if __name__ == "__main__":
    import orjson

    print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
