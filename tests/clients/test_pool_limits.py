"""Four real worker processes share the Redis limiter against the sandboxes over real HTTP.

Each process runs the real clients: many coroutines PATCHing APSIS profiles (spread over
thousands of keys, plus one hot key shared by all processes), and walkers paging through the
sandbox store's customers. The sandboxes count what they received. Asserted, for each API:
at most 1% of requests refused (APSIS: 429; Shopify: THROTTLED), and at least 90% of what the
limit admits in the run (APSIS: 100/s times the duration; Shopify: the GraphQL cost bucket plus
its restore rate times the duration, in pages at their requested cost: refunds of unused points
only add to it).
And the token endpoint was called once per token refresh window, not once per process.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from mappings.installation import Limits
from sandbox.apsis import KEYSPACE, SECTION, ApsisSandbox, default_account
from tests.clients.conftest import REDIS_URL, delete_prefix

try:
    from sandbox.shopify.store import Store
except ImportError as exc:  # the Shopify sandbox is built in parallel; run the APSIS half without it
    SHOPIFY_MISSING: str | None = f"Shopify sandbox not importable ({exc})"
else:
    SHOPIFY_MISSING = None

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
APSIS_LIMIT = 100  # per second, the sandbox's (and APSIS One's) account limit
PROFILE_LIMIT = 10
SHOPIFY_MAXIMUM = 1000.0  # GraphQL points: the bucket the client assumes until told
SHOPIFY_RESTORE = 1000.0  # points/s (a Plus store), so the steady rate, not the bucket, dominates
SHOPIFY_PAGE = 20  # customers a page
SHOPIFY_PAGE_COST = 2 + SHOPIFY_PAGE * 6  # its requested cost (6 points a customer)
TOKEN_LIFETIME = 10.0  # refreshed at 80%: every 8 s, under the endpoint's 10/min


async def run_pool(duration: float) -> dict[str, Any]:
    """Run the pool for `duration` seconds; the figures, as the sandboxes counted them."""
    prefix = f"test-{uuid4().hex}"
    account = default_account(
        token_lifetime=TOKEN_LIFETIME, account_rate=APSIS_LIMIT, profile_rate=PROFILE_LIMIT
    )
    redis = Redis.from_url(REDIS_URL)
    shopify_ctx: Any = None
    if SHOPIFY_MISSING is None:
        shopify_ctx = _SandboxProcess(Store(size=1000))
    try:
        async with ApsisSandbox(account) as apsis:
            shop_url = None
            if shopify_ctx is not None:
                shop_url = await shopify_ctx.start()
            try:
                results = await _run_processes(duration, prefix, apsis.url, shop_url, shopify_ctx)
            finally:
                if shopify_ctx is not None:
                    await shopify_ctx.stop()
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()

    token_route = "/oauth/token"
    total = sum(n for (m, r, s), n in account.requests.items() if r != token_route)
    limited = sum(n for (m, r, s), n in account.requests.items() if r != token_route and s == 429)
    hot = sum(1 for w in account.writes_of("attributes") if w.params["profile_key"] == "hot-profile")
    client_errors = Counter[str]()
    for result in results:
        client_errors.update(result["errors"])
    figures: dict[str, Any] = {
        "processes": PROCESSES,
        "duration_s": duration,
        "apsis_requests": total,
        "apsis_rate_per_s": round(total / duration, 2),
        "apsis_limit_per_s": APSIS_LIMIT,
        "apsis_rate_share": round(total / duration / APSIS_LIMIT, 4),
        "apsis_429": limited,
        "apsis_429_share": round(limited / max(1, total), 4),
        "apsis_429_by_kind": dict(account.rate_limited),
        "apsis_hot_profile_per_s": round(hot / duration, 2),
        "apsis_401": account.request_count(status=401),
        "apsis_token_requests": account.request_count(route=token_route),
        "errors_surfaced": dict(client_errors),
    }
    print(
        f"\nAPSIS ({PROCESSES} processes, {duration:.0f} s): {total} requests, {total / duration:.1f}/s "
        f"= {100 * figures['apsis_rate_share']:.1f}% of {APSIS_LIMIT}/s; 429: {limited} "
        f"({100 * figures['apsis_429_share']:.2f}%) {figures['apsis_429_by_kind']}; hot profile "
        f"{hot / duration:.1f}/s of {PROFILE_LIMIT}/s; token requests {figures['apsis_token_requests']}; "
        f"401: {figures['apsis_401']}"
    )
    print(f"errors surfaced to the callers: {dict(client_errors) or 'none'}")
    if shopify_ctx is None:
        print(f"Shopify half not run: {SHOPIFY_MISSING}")
        return figures
    counts = _shopify_counts(shopify_ctx)
    s_total = sum(counts.values())
    throttled = sum(int(result.get("throttled", 0)) for result in results)
    answered = s_total - throttled
    # What the store's cost bucket admits at most in the run, in pages at their requested cost.
    admissible = (SHOPIFY_MAXIMUM + SHOPIFY_RESTORE * duration) / SHOPIFY_PAGE_COST
    figures |= {
        "shopify_requests": s_total,
        "shopify_pages": answered,
        "shopify_admissible_pages": round(admissible, 1),
        "shopify_rate_share": round(answered / admissible, 4),
        "shopify_throttled": throttled,
        "shopify_throttled_share": round(throttled / max(1, s_total), 4),
    }
    print(
        f"Shopify: {answered} pages = {100 * figures['shopify_rate_share']:.1f}% of the {admissible:.0f} the"
        f" store admits at their requested cost in {duration:g} s (bucket {SHOPIFY_MAXIMUM:g} +"
        f" {SHOPIFY_RESTORE:g} points/s); THROTTLED: {throttled} ({100 * figures['shopify_throttled_share']:.2f}%)"
    )
    return figures


def check(figures: dict[str, Any], *, shares: bool = True) -> None:
    """The limits held. `shares`: also the 429 and rate shares, which are ratios of a timed run
    (asserted over 20 s under the slow marker; a 5 s run on two shared cores only reports them)."""
    duration = figures["duration_s"]
    # Refreshed at 80% of the lifetime: one request per 8 s window, whatever the process count.
    assert 1 <= figures["apsis_token_requests"] <= math.ceil(duration / (0.8 * TOKEN_LIFETIME))
    assert figures["apsis_401"] == 0
    # A pool that did not share its limits would draw a large share of 429s even in 5 s; the first
    # second's burst on busy cores can cost a few, so the tight 1 % bound waits for the 20 s run.
    assert figures["apsis_429_share"] <= 0.05
    if not shares:
        return
    assert figures["apsis_429_share"] <= 0.01
    assert figures["apsis_rate_share"] >= 0.9
    # The hot key (16 coroutines in 4 processes) stayed under its limit (no 429 above) and was
    # served: it waits in the profile queue, then in the saturated account's like everyone else.
    assert figures["apsis_hot_profile_per_s"] >= 0.5 * PROFILE_LIMIT
    if "shopify_requests" in figures:
        assert figures["shopify_throttled_share"] <= 0.01
        assert figures["shopify_rate_share"] >= 0.9


class _SandboxProcess:
    """The Shopify sandbox in a process of its own (`python -m sandbox.shopify`): executing
    GraphQL in this process would stall the APSIS sandbox's event loop and bunch up the
    requests it counts against its limit."""

    def __init__(self, store: Any) -> None:
        self.store = store  # the same seed and defaults: its domain and access token
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.counts: dict[tuple[str, int], int] = {}

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sandbox.shopify",
            "--port",
            "0",
            "--print-url",
            "--customers",
            str(self.store.size),
            "--seed",
            str(self.store.seed),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.url = (await asyncio.wait_for(self.proc.stdout.readline(), timeout=60)).decode().strip()
        limits = {"graphql_maximum": SHOPIFY_MAXIMUM, "graphql_restore_rate": SHOPIFY_RESTORE}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.url}/_sandbox/config", json={"rate_limit": limits}) as resp:
                assert resp.status < 300, await resp.text()
        return self.url

    async def stop(self) -> None:
        if self.proc is None:
            return
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{self.url}/_sandbox/requests") as resp:
                    rows = await resp.json()
            self.counts = {(r["route"], int(r["status"])): int(r["count"]) for r in rows}
        finally:
            self.proc.terminate()
            await self.proc.wait()

    def request_counts(self) -> dict[tuple[str, int], int]:
        return self.counts


def _shopify_counts(sandbox: Any) -> Counter[int]:
    """Admin API requests by status, as the Shopify sandbox counted them."""
    counts = Counter[int]()
    for (name, status), n in sandbox.request_counts().items():
        if name.startswith("POST /admin/api") and name.endswith("/graphql.json"):
            counts[int(status)] += n
    return counts


async def _run_processes(
    duration: float, prefix: str, apsis_url: str, shop_url: str | None, shopify: Any
) -> list[dict[str, Any]]:
    limits = Limits(
        apsis_requests_per_s=APSIS_LIMIT,
        apsis_profile_requests_per_s=PROFILE_LIMIT,
    )
    base: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "prefix": prefix,
        "limits": {f: getattr(limits, f) for f in Limits.__dataclass_fields__},
        "apsis_url": apsis_url,
        "client_id": "sandbox-client",
        "client_secret": "sandbox-client-secret",
        "keyspace": KEYSPACE,
        "section": SECTION,
        "duration": duration,
        "apsis_tasks": 24,
        "hot_tasks": 4,
        "shopify_tasks": 3,
        "shopify_page": SHOPIFY_PAGE,
    }
    if shop_url is not None:
        base |= {
            "shopify_url": shop_url,
            "shop_domain": shopify.store.domain,
            "shop_token": shopify.store.access_token,
        }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.clients.hammer",
            orjson.dumps({**base, "seed": n}).decode(),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    try:
        for proc in procs:  # every process set up before the clock starts
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line.strip() == b"ready", line
        start_at = time.time() + 0.5
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n".encode())
            await proc.stdin.drain()
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate() for proc in procs)), timeout=duration + 60
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    results = []
    for proc, (stdout, _) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0
        results.append(orjson.loads(stdout.strip().splitlines()[-1]))
    return results


async def test_four_processes_share_the_limits() -> None:
    check(await run_pool(duration=5.0), shares=False)


@pytest.mark.slow
async def test_four_processes_share_the_limits_for_20_seconds() -> None:
    check(await run_pool(duration=20.0))
