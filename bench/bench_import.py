"""Full sync through APSIS profile imports, against the Shopify bulk export read alone.

Everything runs as separate OS processes over loopback: the Shopify sandbox (its bulk export as it
models it: an operation runs at 50,000 objects/s, then its JSONL is streamed), the APSIS sandbox at
the limits of imports and exports (3 pending imports per account, 10 import requests a minute, one
export request a second, 100 API requests a second, `ROWS_PER_S` rows processed a second: see
docs/PERFORMANCE.md, "Full sync through imports"), real Redis and `WORKERS` `shopsync worker`
processes. Per size:

1. **Shopify alone**: one bulk export of the store, started, polled every 0.1 s and its JSONL read
   and parsed line by line, no sync: customers per second is the most the store hands out.
2. **The full sync** of the same store (`bulk_export = true`, `import_threshold` under the store
   size, so it takes the import path): wall time from the start to the record's `finished`, the
   workers' RSS sampled every 0.5 s (psutil), the APSIS sandbox's request counts (429 share).
3. **Lost**: every customer (a random sample above `FULL_CHECK_MAX`, said in the result) is
   checked against the APSIS sandbox's account over its `/_sandbox` routes: the profile's
   attributes and its opted-in topics must be what a fresh per-profile sync of the customer writes
   (`reliability.oracle`, the e2e tests' oracle, computed from an in-process copy of the store).

    make bench BENCH_ARGS=import                      # 100,000 and 1,000,000 customers
    make bench BENCH_ARGS='import --sizes 20000'      # a quick run (any sizes, comma-separated)

Writes `bench/results/import.json` (and the timestamped copy `bench.run` writes).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.cpu_use import CpuMeter, python_speed_ms, redis_server_pids
from bench.fullsync_procs import Procs, processes
from bench.redis_stalls import slow_commands
from core import fullsync_control as control
from core.keys import Keys
from mappings.installation_parse import parse_installations
from reliability import oracle
from sandbox.apsis.account import default_account
from sandbox.installation import installation_document
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.store import Store
from shopsync.devredis import embedded_redis, redis_answers
from worker.shopify_queries import BULK_OPERATION_QUERY, BULK_RUN_MUTATION, customer_documents

RESULTS = Path(__file__).resolve().parent / "results"
WORKERS = 2
SEED = 1
API_VERSION = "2024-10"
SIZES = (100_000, 1_000_000)
# The APSIS sandbox's limits for the run (docs/PERFORMANCE.md justifies the processing rate).
ROWS_PER_S = float(os.environ.get("BENCH_IMPORT_ROWS_PER_S", "2000"))
IMPORT_LIMITS = {"max_pending": 3, "requests_per_minute": 10, "rows_per_second": ROWS_PER_S}
IMPORT_THRESHOLD = 1000
FULL_CHECK_MAX = 200_000  # above it, a random sample of this many customers is checked
CHECK_CONCURRENCY = 32
TOKEN = "shpat_sandbox_token"
TIME_LIMIT_S = 4 * 3600.0


async def _graphql(session: aiohttp.ClientSession, url: str, query: str, variables: dict[str, Any]) -> Any:
    async with session.post(url, json={"query": query, "variables": variables}) as response:
        body = await response.json()
    if body.get("errors"):
        raise RuntimeError(f"shopify: {body['errors']}")
    return body["data"]


async def bulk_export_url(session: aiohttp.ClientSession, shopify_url: str) -> str:
    """A bulk export of the sandbox store's customers run to its end: the URL of its file."""
    url = f"{shopify_url}/admin/api/{API_VERSION}/graphql.json"
    query = customer_documents(API_VERSION).bulk
    data = await _graphql(session, url, BULK_RUN_MUTATION, {"query": query})
    operation = data["bulkOperationRunQuery"]["bulkOperation"]
    while True:
        await asyncio.sleep(0.1)
        node = (await _graphql(session, url, BULK_OPERATION_QUERY, {"id": operation["id"]}))["node"]
        if node["status"] == "COMPLETED":
            return str(node["url"])
        if node["status"] not in ("CREATED", "RUNNING"):
            raise RuntimeError(f"bulk export {node['status']}: {node.get('errorCode')}")


def shopify_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"X-Shopify-Access-Token": TOKEN})


async def shopify_alone(p: Procs) -> dict[str, Any]:
    """One bulk export of the store read to its last line, no sync: how fast the store hands it out."""
    async with shopify_session() as session:
        started = time.monotonic()
        file_url = await bulk_export_url(session, p.shopify_url)
        ready = time.monotonic()
        lines = 0
        async with session.get(file_url) as response:
            async for line in response.content:
                if line.strip():
                    orjson.loads(line)
                    lines += 1
        seconds = time.monotonic() - started
    return {
        "customers": lines,
        "seconds": round(seconds, 2),
        "export_running_s": round(ready - started, 2),
        "customers_per_s": round(lines / seconds, 1),
    }


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        if response.status == 404:
            return None
        response.raise_for_status()
        return await response.json()


async def _apsis_counts(session: aiohttp.ClientSession, p: Procs) -> dict[str, Any]:
    rows = (await _get(session, f"{p.apsis_url}/_sandbox/requests"))["items"]
    api = [r for r in rows if r["route"] != "/oauth/token"]
    imports = await _get(session, f"{p.apsis_url}/_sandbox/imports")
    return {
        "apsis_requests": sum(r["count"] for r in api),
        "apsis_429": sum(r["count"] for r in api if r["status"] == 429),
        "apsis_by_route": sorted(
            (
                {"route": f"{r['method']} {r['route']}", "status": r["status"], "count": r["count"]}
                for r in api
            ),
            key=lambda r: -int(r["count"]),
        )[:20],
        "imports": imports,
    }


@dataclass
class _Remote:
    """What the oracle reads of an account, fetched from the APSIS sandbox process."""

    profiles: dict[str, Any] = field(default_factory=dict)
    opted: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)

    def profile(self, keyspace: str, key: str) -> Any:
        return self.profiles.get(key)

    def opted_in_topics(self, keyspace: str, key: str, section: str, channel: str) -> list[str]:
        return sorted(self.opted.get((key, section), {}).get(channel, []))


@dataclass
class _Profile:
    attributes: Mapping[str, Mapping[str, Any]]


async def lost_customers(p: Procs, customers: int, document: dict[str, Any]) -> dict[str, Any]:
    """Customers whose APSIS profile differs from what the per-profile path writes (oracle)."""
    shop = next(iter(parse_installations(document, env={}, source="bench").shops.values()))
    store = Store(seed=SEED, size=customers, anchor=datetime.fromtimestamp(p.anchor, UTC))
    addresses = oracle.address_attributes(shop, default_account())
    ids = list(range(CUSTOMER_BASE, CUSTOMER_BASE + customers))
    sampled = len(ids) > FULL_CHECK_MAX
    if sampled:
        ids = sorted(random.Random(7).sample(ids, FULL_CHECK_MAX))
    keyspace = shop.apsis.keyspace
    semaphore = asyncio.Semaphore(CHECK_CONCURRENCY)
    lost: list[str] = []
    base = p.apsis_url

    async def one(session: aiohttp.ClientSession, cid: int) -> None:
        async with semaphore:
            remote = _Remote()
            body = await _get(session, f"{base}/_sandbox/profiles/{keyspace}/{cid}")
            if body is not None:
                remote.profiles[str(cid)] = _Profile(body["attributes"])
                for section in shop.sections:
                    if section.consents and section.discriminator in body["attributes"]:
                        got = await _get(
                            session, f"{base}/_sandbox/consents/{keyspace}/{cid}/{section.discriminator}"
                        )
                        remote.opted[(str(cid), section.discriminator)] = (got or {}).get("opted_in", {})
            problems = oracle.customer_problems(shop, store, remote, cid, addresses)  # type: ignore[arg-type]
            if problems:
                lost.append(problems[0])

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CHECK_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        for start in range(0, len(ids), 5000):
            await asyncio.gather(*(one(session, cid) for cid in ids[start : start + 5000]))
    return {
        "lost": len(lost),
        "checked": len(ids),
        "check": "sample" if sampled else "every customer",
        "check_seconds": round(time.monotonic() - started, 1),
        "lost_examples": sorted(lost)[:10],
    }


async def _one(redis_url: str, customers: int) -> dict[str, Any]:
    prefix = f"bench-imp-{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    redis = aioredis.Redis.from_url(redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-imp-"))
    overrides: dict[str, Any] = {"sync": {"bulk_export": True, "import_threshold": IMPORT_THRESHOLD}}
    document = installation_document("http://shopify", "http://apsis", API_VERSION, **overrides)
    try:
        with processes(redis_url, prefix, workdir, customers=customers, seed=SEED, **overrides) as p:
            async with aiohttp.ClientSession() as session:
                async with session.patch(f"{p.apsis_url}/_sandbox/imports", json=IMPORT_LIMITS) as r:
                    r.raise_for_status()
                alone = await shopify_alone(p)
                print(
                    f"   {customers:,}: Shopify bulk export alone {alone['customers_per_s']:,.0f}/s",
                    flush=True,
                )
                for _ in range(WORKERS):
                    p.start_worker()
                await asyncio.sleep(2.0)  # workers up (they import, connect, heartbeat)
                # CPU over the sync: the workers with their walk processes, each sandbox, Redis
                # (a Redis elsewhere, as in CI's REDIS_URL, counts for nothing here).
                meter = CpuMeter(_roles(p, redis_url))
                meter.start()
                async with slow_commands(redis) as stalls:
                    seconds, record, timeline, redis_peak = await _sync(p, redis, keys)
                cores = meter.stop()
                counts = await _apsis_counts(session, p)
            peaks = dict(p.peak_rss)
            for w in p.workers:  # stop them before the check: it measures APSIS, not the pool
                w.terminate()
            for w in p.workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()
            check = await lost_customers(p, customers, document)
    finally:
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    mb = 1024 * 1024
    rate = customers / seconds
    imports = counts.pop("imports")
    # What APSIS's processing allows: its rows a second over the rows each customer took.
    rows = int(imports.get("rows_applied") or 0) + int(imports.get("rows_skipped") or 0)
    apsis_limit = ROWS_PER_S / max(rows / customers, 1e-9)
    binding = min(alone["customers_per_s"], apsis_limit)
    return {
        "customers": customers,
        "seconds": round(seconds, 1),
        "customers_per_s": round(rate, 1),
        "shopify_alone": alone,
        "ratio_to_shopify_limit": round(rate / alone["customers_per_s"], 3),
        "import_rows_per_customer": round(rows / customers, 3),
        "apsis_processing_limit_customers_per_s": round(apsis_limit, 1),
        "ratio_to_binding_limit": round(rate / binding, 3),
        "peak_rss_mb": round(max(v for n, v in peaks.items() if n.startswith("worker")) / mb, 1),
        "peak_rss_mb_by_process": {n: round(v / mb, 1) for n, v in sorted(peaks.items())},
        "redis_peak_used_mb": round(redis_peak / mb, 1),
        # The import path's own cost, comparable across changes on one machine (with
        # python_speed_ms): the workers' CPU, their walk processes' included, per customer.
        "worker_cpu_ms_per_customer": round(meter.used["workers"] * 1000 / customers, 3),
        "cpu_s": {role: round(used, 1) for role, used in meter.used.items()},
        "cpu_cores": cores,
        "python_speed_ms": python_speed_ms(),
        # The sync's commands that kept Redis busy 1 ms or more (webhooks wait behind them).
        "redis_slow_commands": stalls,
        "apsis_429_share": round(counts["apsis_429"] / max(counts["apsis_requests"], 1), 5),
        "lost": check["lost"] + int(record.get("failed") or 0),
        **check,
        "timeline_s": timeline,
        "sync": {
            k: record.get(k)
            for k in (
                "state",
                "path",
                "source",
                "seen",
                "synced",
                "skipped",
                "unchanged",
                "failed",
                "import_rows",
                "import_rows_per_profile",
                "import_rows_refused",
                "import_rows_resent",
                "import_retries",
                "import_files",
            )
        },
        **counts,
        "apsis_imports": {k: imports.get(k) for k in ("imports", "counters", "rows_applied", "rows_skipped")},
        "apsis_limits": {**IMPORT_LIMITS, "export_requests_per_s": 1, "api_requests_per_s": 100},
        "workers": WORKERS,
    }


def _roles(p: Procs, redis_url: str) -> dict[str, list[int]]:
    return {
        "workers": [w.pid for w in p.workers],
        "shopify_sandbox": [p.sandboxes[0].pid],
        "apsis_sandbox": [p.sandboxes[1].pid],
        "redis": redis_server_pids(redis_url),
    }


async def _sync(p: Procs, redis: Any, keys: Keys) -> tuple[float, dict[str, Any], dict[str, float], int]:
    """The full sync from its start to its end: (seconds, record, timeline, Redis's peak memory)."""
    started = await control.start_full_sync(redis, keys, "demo-store.myshopify.com", bulk=True)
    t0 = time.monotonic()
    last_print = t0
    timeline: dict[str, float] = {}
    redis_peak = 0
    while True:
        p.sample_rss()
        # The Redis server's memory during the sync (the expected rows, the index, the
        # CSVs, the states: docs/DEPLOYMENT.md); on a shared server, others' keys too.
        redis_peak = max(redis_peak, int((await redis.info("memory"))["used_memory"]))
        record = await control.read_sync(redis, keys, started.sync_id)
        assert record is not None
        _phases(timeline, record, time.monotonic() - t0)
        if record["state"] in control.TERMINAL:
            return time.monotonic() - t0, record, timeline, redis_peak
        if any(w.poll() is not None for w in p.workers):
            raise RuntimeError("a worker process died")
        if time.monotonic() - t0 > TIME_LIMIT_S:
            raise RuntimeError("the full sync took longer than the bench allows")
        if time.monotonic() - last_print > 30:
            last_print = time.monotonic()
            print(
                f"   {time.monotonic() - t0:6.0f} s walked {record.get('walked')} "
                f"files {record.get('import_files')}",
                flush=True,
            )
        await asyncio.sleep(0.5)


def _phases(timeline: dict[str, float], record: Mapping[str, Any], at: float) -> None:
    """The first time (s from the start) each phase of the sync was seen (sampled every 0.5 s)."""
    files = record.get("import_files") or {}
    seen = {
        "export_ready": bool(record.get("bulk_url")),
        "first_file_uploaded": int(files.get("uploaded") or 0) > 0,
        "first_file_completed": int(files.get("completed") or 0) > 0,
        "read_done": bool(record.get("read_done")),
        # Every file closed (none still building: the last ones close once the store is read)
        # and every built one completed or failed.
        "files_completed": bool(record.get("read_done"))
        and not int(files.get("building") or 0)
        and int(files.get("completed") or 0) + int(files.get("failed") or 0) == int(files.get("built") or -1),
        "verified": bool(record.get("import_verified")),
        "walk_done": bool(record.get("walk_done")),
        "finished": record.get("state") in control.TERMINAL,
    }
    for name, reached in seen.items():
        if reached and name not in timeline:
            timeline[name] = round(at, 1)


KEYS = (
    "customers",
    "seconds",
    "customers_per_s",
    "ratio_to_shopify_limit",
    "peak_rss_mb",
    "apsis_429_share",
    "lost",
)


SHOWN = (*KEYS, "ratio_to_binding_limit", "worker_cpu_ms_per_customer")


def _table(runs: list[dict[str, Any]]) -> None:
    print("   " + " | ".join(SHOWN))
    for r in runs:
        print("   " + " | ".join(str(r[k]).rjust(len(k)) for k in SHOWN))


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    chosen = sizes or ([20_000] if quick else list(SIZES))
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

    def go(redis_url: str) -> dict[str, Any]:
        runs: list[dict[str, Any]] = []
        out: dict[str, Any] = {}
        for n in chosen:
            runs.append(asyncio.run(_one(redis_url, n)))
            _table(runs)
            top = next((r for r in runs if r["customers"] == 100_000), runs[0])
            out = {"name": "import", **{k: top[k] for k in SHOWN}, "runs": runs}
            RESULTS.mkdir(exist_ok=True)  # after each size: a long run killed later keeps the rest
            (RESULTS / "import.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
        return out

    if redis_answers(url):
        return go(url)
    with embedded_redis() as embedded:
        return go(embedded)
