"""Load: the receiver alone at a sustained rate; the whole pipeline draining a burst at the APSIS
budget and then keeping the real-time latency goal; scale-out keeping every shared limit."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.bench_receiver import _payload
from bench.wrk import run_wrk
from receiver.signature import sign
from reliability.report import Result
from reliability.scenarios.common import finish
from reliability.stack import DOMAIN, RunContext, Stack, StackConfig, stack
from sandbox.apsis.account import WriteRecord

SECRET = "sandbox-webhook-secret"  # mappings/demo.toml
APSIS_BUDGET_PER_S = 100.0  # the account limit the sandbox enforces (and APSIS documents)


async def receiver_load(run: RunContext) -> Result:
    """wrk paced to >= 2,000 webhooks/s (each connection waits between requests): p99 < 50 ms,
    every answer a 200, and every 200 one job in Redis (unique webhook ids)."""
    seconds = 5 if run.short else 60
    connections, pause_ms = 50, 20  # 50 / (20 ms + latency) ~ 2,300 requests/s
    result = Result("receiver-load", faults="-")
    body = _payload()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "customers/update",
        "X-Shopify-Shop-Domain": DOMAIN,
        "X-Shopify-Hmac-Sha256": sign(SECRET, body),
        "X-Shopify-API-Version": "2024-10",
        "X-Shopify-Event-Id": "reliability-event",
        "X-Shopify-Triggered-At": "2024-10-01T12:00:00.000Z",
    }
    async with stack(run, "receiver-load", StackConfig(customers=10, workers=0, log_level="warning")) as s:
        url = s.receiver_url()
        await asyncio.to_thread(
            run_wrk, url, body, headers, run_id="warm", seconds=2, connections=connections, pause_ms=pause_ms
        )
        await s.redis.delete(s.keys.realtime_queue)
        out = await asyncio.to_thread(
            run_wrk,
            url,
            body,
            headers,
            run_id="load",
            seconds=seconds,
            connections=connections,
            pause_ms=pause_ms,
        )
        enqueued = int(await s.redis.zcard(s.keys.realtime_queue))
    errors = out["non2xx"] + out["connect_errors"] + out["read_errors"] + out["timeouts"]
    p99_ms = out["p99_us"] / 1000
    result.load = f"{out['rps']:.0f} webhooks/s for {seconds} s"
    result.inputs = out["requests"]
    result.figures.update(
        rps=round(out["rps"]),
        p50_ms=round(out["p50_us"] / 1000, 2),
        p99_ms=round(p99_ms, 2),
        max_ms=round(out["max_us"] / 1000, 1),
        error_answers=errors,
        jobs_enqueued=enqueued,
    )
    timed = run.assert_timing
    result.expect_timing(out["rps"] >= 2000, f"held only {out['rps']:.0f} webhooks/s (goal >= 2,000)", timed)
    result.expect_timing(p99_ms < 50, f"p99 {p99_ms:.1f} ms (goal < 50 ms)", timed)
    result.expect(errors == 0, f"{errors} error answers")
    # wrk counts completed requests; the few in flight at its stop may be stored but not counted.
    result.expect(
        out["requests"] <= enqueued <= out["requests"] + connections,
        f"{enqueued} jobs for {out['requests']} acknowledged webhooks",
    )
    return result


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _drain_rate(writes: list[WriteRecord], requests_by_second: list[int]) -> float:
    """APSIS requests admitted per second over the busy seconds of the drain (first to last
    full second in which the account was being written)."""
    busy = requests_by_second[1:-1] if len(requests_by_second) > 2 else requests_by_second
    return statistics.fmean(busy) if busy else 0.0


async def _burst(s: Stack, updates: int, customers: int) -> int:
    """`updates` edits spread over the first `customers` customers, round robin (each one
    edited `updates / customers` times): Shopify sends one customers/update webhook per edit."""
    ids = list(s.store.customer_ids())[:customers]
    names = ("Alva", "Björn", "Cecilia", "Dag", "Ebba", "Frej", "Greta", "Hugo", "Ines", "Jon")
    done = 0
    for round_no in range(updates // len(ids) + 1):
        for cid in ids:
            if done >= updates:
                return done
            await s.store.update_customer(cid, first_name=f"{names[round_no % len(names)]}{round_no}")
            done += 1
    return done


async def _latency(s: Stack, fresh: list[int], rate: float, seconds: float) -> list[float]:
    """Edit one fresh customer at a time at `rate`; latency = APSIS PATCH time - edit time."""
    edited: dict[str, float] = {}
    start = time.monotonic()
    for i, cid in enumerate(fresh[: int(rate * seconds)]):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        edited[str(cid)] = time.time()
        await s.store.update_customer(cid, first_name="Latency")
    deadline = time.monotonic() + 60
    written: dict[str, float] = {}
    while time.monotonic() < deadline and len(written) < len(edited):
        await asyncio.sleep(0.5)
        for w in s.account.writes_of("attributes"):
            key = w.params["profile_key"]
            if key in edited and w.at >= edited[key]:
                written.setdefault(key, w.at)
    return [written[k] - t for k, t in edited.items() if k in written]


async def pipeline_burst(run: RunContext) -> Result:
    """Receiver, 3 worker processes, APSIS at its limits: a burst of customer updates drains at
    >= 90% of the APSIS budget with < 1% 429s; then real-time latency p50 <= 100 ms, p99 <= 500 ms."""
    updates, customers = (2_000, 200) if run.short else (50_000, 2_000)
    result = Result("pipeline-burst", faults="-")
    config = StackConfig(customers=customers + 1_000, workers=3, worker_queue="realtime", log_level="warning")
    async with stack(run, "pipeline-burst", config) as s:
        s.store.deliverer.config.record_limit = updates + 10_000
        s.subscribe(["customers/update"])
        started = time.monotonic()
        sent = await _burst(s, updates, customers)
        await s.settle(900)
        drained_s = time.monotonic() - started
        writes = [w for w in s.account.writes_of() if w.at >= time.time() - drained_s - 1]
        requests = sum(s.account.requests.values())
        limited = sum(s.account.rate_limited.values())
        per_second: dict[int, int] = {}
        for w in writes:
            per_second[int(w.at)] = per_second.get(int(w.at), 0) + 1
        seconds = sorted(per_second)
        series = [per_second.get(t, 0) for t in range(seconds[0], seconds[-1] + 1)] if seconds else []
        rate = _drain_rate(writes, series)
        fresh = list(s.store.customer_ids())[customers : customers + 1_000]
        latencies = await _latency(s, fresh, rate=20.0, seconds=10.0 if run.short else 30.0)
        await finish(s, result, settle_s=120, all_customers=False)
    share_429 = limited / requests if requests else 0.0
    p50 = statistics.median(latencies) * 1000 if latencies else float("inf")
    p99 = _percentile(latencies, 0.99) * 1000 if latencies else float("inf")
    result.inputs = sent + len(latencies)
    result.load = f"{sent:,} updates burst, then 20/s"
    result.figures.update(
        burst_updates=sent,
        burst_customers=customers,
        drain_s=round(drained_s, 1),
        apsis_writes_per_s=round(rate, 1),
        budget_share=round(rate / APSIS_BUDGET_PER_S, 3),
        apsis_requests=requests,
        apsis_429_share=round(share_429, 4),
        latency_p50_ms=round(p50, 1),
        latency_p99_ms=round(p99, 1),
    )
    timed = run.assert_timing
    result.expect_timing(
        rate >= 0.9 * APSIS_BUDGET_PER_S, f"drained at {rate:.1f} requests/s (< 90% of 100/s)", timed
    )
    # The limiter paces by the clock: a CPU-starved process sends late, in bursts, and the
    # account's sliding window refuses some. A timing goal, like the rates.
    result.expect_timing(share_429 < 0.01, f"429s were {share_429:.2%} of APSIS requests (goal < 1%)", timed)
    result.expect_timing(
        p50 <= 100 and p99 <= 500, f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms after the backlog", timed
    )
    return result


async def scale_out(run: RunContext) -> Result:
    """2 receivers and 4 worker processes on one Redis, a burst plus live changes plus a full
    sync: APSIS account, profile and token limits and Shopify's call limit all hold."""
    updates, customers = (3_000, 300) if run.short else (20_000, 1_000)
    result = Result("scale-out", faults="-")
    config = StackConfig(customers=customers * 2, receivers=2, workers=4, log_level="warning")
    async with stack(run, "scale-out", config) as s:
        s.store.deliverer.config.record_limit = updates + 10_000
        s.subscribe()
        sync_id = await s.start_full_sync()
        sent = await _burst(s, updates, customers)
        await finish(s, result, settle_s=900, all_customers=sync_id is not None)
        requests = sum(s.account.requests.values())
        limited = dict(s.account.rate_limited)
        shopify = s.shopify.request_counts()
        shopify_429 = sum(n for (_, status), n in shopify.items() if status == 429)
        tokens = s.account.request_count(route="/oauth/token")
    share = sum(limited.values()) / requests if requests else 0.0
    result.inputs = sent
    result.load = f"{sent:,} updates, 2 receivers, 4 workers" + (" + full sync" if sync_id else "")
    result.figures.update(
        apsis_requests=requests,
        apsis_429_by_limit=limited,
        apsis_429_share=round(share, 4),
        token_requests=tokens,
        shopify_requests=sum(shopify.values()),
        shopify_429=shopify_429,
    )
    result.expect_timing(share < 0.01, f"APSIS 429s {share:.2%} of requests (goal < 1%)", run.assert_timing)
    result.expect(limited.get("token", 0) == 0, "token endpoint limit exceeded")
    result.expect(shopify_429 == 0, f"{shopify_429} Shopify 429s")
    return result
