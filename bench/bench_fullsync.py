"""Full sync of a sandbox store at the documented limits, everything in separate OS processes.

The Shopify sandbox (GraphQL Admin API, a Plus store: 1,000 cost points/s, a customers page of
166 requested at about 1,000 points, so at least 166 customers/s from Shopify's side) and the
APSIS sandbox (100 requests/s per account) run as processes, with two `shopsync worker`
processes sharing the Redis limiter. The sync takes the per-profile path (`import_threshold =
0`; the import path is `bench_import`). The bench starts a full sync, samples every process's
RSS (psutil) until it ends, then reads both sandboxes' request counts. It reports customers/s
against the binding limit, min(166, 100 / APSIS requests per customer), the 429s, and the peak
RSS per process; the full run does 10k and 100k customers so the two peaks can be compared
(memory must not grow with the store).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.bench_shopify_sandbox import PAGE_SIZE
from bench.cpu_use import CpuMeter, command_calls, per_unit, python_speed_ms
from bench.fullsync_procs import Procs, processes
from core import fullsync_control as control
from core.keys import Keys
from shopsync.devredis import embedded_redis, redis_answers

WORKERS = 2
SHOP = "demo-store.myshopify.com"
# A page a second on Plus (1,000 points restored a second; a page is sized to the 1,000-point
# query maximum), before the actual-cost refunds: the page size the walk's document allows.
SHOPIFY_CUSTOMERS_PER_S = float(PAGE_SIZE)
APSIS_REQUESTS_PER_S = 100.0


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def apsis_counts(url: str) -> dict[str, int]:
    """An APSIS sandbox account's API requests (the token's left out): all, those under its budget
    (every one not refused: reads count against the 100 a second as writes do), the writes and
    the 429s."""
    api = [r for r in (await _get(f"{url}/_sandbox/requests"))["items"] if r["route"] != "/oauth/token"]
    return {
        "apsis_requests": sum(r["count"] for r in api),
        "apsis_budgeted": sum(r["count"] for r in api if r["status"] != 429),
        "apsis_writes": sum(r["count"] for r in api if r["method"] != "GET" and r["status"] < 400),
        "apsis_429": sum(r["count"] for r in api if r["status"] == 429),
    }


async def _counts(p: Procs) -> dict[str, Any]:
    shopify = await _get(f"{p.shopify_url}/_sandbox/requests")  # [{route: "GET /admin/...", status, count}]
    return {
        **await apsis_counts(p.apsis_url),
        "shopify_requests": sum(r["count"] for r in shopify if "/admin/" in r["route"]),
        "shopify_429": sum(r["count"] for r in shopify if r["status"] == 429),
    }


async def _one(redis_url: str, customers: int) -> dict[str, Any]:
    prefix = f"bench-fs-{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    redis = aioredis.Redis.from_url(redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fs-"))
    peak_redis = 0
    peak_pages = 0
    try:
        # The per-profile path (`import_threshold = 0`; through imports is `bench_import`), on a
        # Plus store: on Standard the walk's GraphQL budget (100 points/s) paces the sync under
        # APSIS's bound and the bench would measure Shopify's plan.
        with processes(
            redis_url, prefix, workdir, customers=customers, plan="plus", sync={"import_threshold": 0}
        ) as p:
            for _ in range(WORKERS):
                p.start_worker()
            await asyncio.sleep(2.0)  # workers up (they import, connect, heartbeat)
            # The workers' CPU and Redis's commands from the start to the end of the sync, per
            # customer: what one customer costs the deployment, beside the rate APSIS allows.
            meter = CpuMeter({"workers": [w.pid for w in p.workers]})
            calls0 = await command_calls(redis)
            meter.start()
            started = await control.start_full_sync(redis, keys, SHOP)
            t0 = time.monotonic()
            while True:
                p.sample_rss()
                info = await redis.info("memory")
                peak_redis = max(peak_redis, int(info["used_memory"]))
                # What the full sync itself holds in Redis: the batches waiting (bounded by the
                # coordinator's backpressure), apart from the per-customer state every sync keeps.
                sk = control.SyncKeys(keys, started.sync_id)
                waiting = 0
                for batch in await redis.hkeys(sk.pending):
                    waiting += int(await redis.memory_usage(sk.page(int(batch))) or 0)
                peak_pages = max(peak_pages, waiting)
                record = await control.read_sync(redis, keys, started.sync_id)
                assert record is not None
                if record["state"] in control.TERMINAL:
                    break
                if any(w.poll() is not None for w in p.workers):
                    raise RuntimeError("a worker process died")
                await asyncio.sleep(0.5)
            wall = time.monotonic() - t0
            cores = meter.stop()
            calls1 = await command_calls(redis)
            counts = await _counts(p)
            peaks = dict(p.peak_rss)
    finally:
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    seen = int(record["seen"])
    duration = float(record.get("duration_s") or wall)
    rate = seen / duration
    per_customer = counts["apsis_budgeted"] / max(seen, 1)
    binding = min(SHOPIFY_CUSTOMERS_PER_S, APSIS_REQUESTS_PER_S / max(per_customer, 1e-9))
    mb = 1024 * 1024
    return {
        "customers": customers,
        "state": record["state"],
        "seen": seen,
        "synced": record["synced"],
        "skipped": record["skipped"],
        "failed": record["failed"],
        "duration_s": round(duration, 1),
        "customers_per_s": round(rate, 1),
        "apsis_requests_per_customer": round(per_customer, 3),
        "apsis_writes_per_customer": round(counts["apsis_writes"] / max(seen, 1), 3),
        "worker_cpu_ms_per_customer": round(meter.used["workers"] * 1000 / max(seen, 1), 2),
        "machine_busy_share": cores["machine_busy_share"],
        "python_speed_ms": python_speed_ms(),
        "redis_commands_per_customer": per_unit(calls0, calls1, seen),
        "binding_limit_customers_per_s": round(binding, 1),
        "share_of_binding_limit": round(rate / binding, 3),
        **counts,
        "apsis_429_share": round(counts["apsis_429"] / max(counts["apsis_requests"], 1), 5),
        "shopify_429_share": round(counts["shopify_429"] / max(counts["shopify_requests"], 1), 5),
        "peak_rss_mb": {name: round(v / mb, 1) for name, v in sorted(peaks.items())},
        "peak_worker_rss_mb": round(max(v for n, v in peaks.items() if n.startswith("worker")) / mb, 1),
        # The whole Redis (shared with anything else using it): grows with the store because
        # of the per-customer sync state (what was last written), by design.
        "peak_redis_used_memory_mb": round(peak_redis / mb, 1),
        "peak_waiting_batches_mb": round(peak_pages / mb, 2),
    }


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([10_000] if quick else [10_000, 100_000])
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    def go(redis_url: str) -> dict[str, Any]:
        runs = [asyncio.run(_one(redis_url, n)) for n in sizes]
        out: dict[str, Any] = {"name": "fullsync", "workers": WORKERS, "runs": runs}
        last = runs[-1]
        for key in (
            "customers",
            "customers_per_s",
            "binding_limit_customers_per_s",
            "share_of_binding_limit",
            "worker_cpu_ms_per_customer",
            "apsis_429_share",
            "shopify_429_share",
            "peak_worker_rss_mb",
        ):
            out[key] = last[key]
        for r in runs:
            out[f"peak_worker_rss_mb_{r['customers'] // 1000}k"] = r["peak_worker_rss_mb"]
        return out

    if redis_answers(url):
        return go(url)
    with embedded_redis() as embedded:
        return go(embedded)
