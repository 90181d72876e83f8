"""Many shops on one deployment (issue 17): one shop's APSIS account down while five others sync.

Six shops share one receiver, two workers and one Redis; each has its own sandbox store and APSIS
account. All six receive live changes at a steady rate (`Traffic`); beside that, each of the five
others gets `PROBE_RATE` probe edits a second (a customer's first name set to a unique marker),
whose latency is the time from the store's change (the sandbox sends its webhook at once) to the
APSIS write carrying the marker. The main shop's APSIS account then answers 503 to everything for
`fault_s`: its jobs retry and back off (worker/shop_backoff.py), the others must not notice: their
p99 during the outage within 1.5x of their p99 before it. After recovery every shop's changed
customers are compared with its APSIS account (`reliability.oracle`): nothing lost anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import orjson

from reliability.report import Result
from reliability.scenarios.common import MAX_LISTED, finish
from reliability.stack import DOMAIN, ExtraShop, RunContext, Stack, StackConfig, stack
from reliability.traffic import Traffic

OTHERS = 5
RATE = 4.0  # live changes a second, per shop
PROBE_RATE = 4.0  # probe edits a second, per other shop
P99_RATIO_GOAL = 1.5


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@dataclass
class Probe:
    """Marker edits on one shop and the APSIS writes that carry them: (sent at, phase, latency)."""

    shop: ExtraShop
    phase: str = "warmup"
    sent: dict[str, tuple[float, str, int]] = field(default_factory=dict)  # marker -> (at, phase, id)
    latency: dict[str, float] = field(default_factory=dict)
    _seq: int = 0
    _task: asyncio.Task[None] | None = None

    def match(self) -> None:
        for write in self.shop.account.writes_after(self._seq):
            self._seq = write.seq
            if write.kind != "attributes":
                continue
            text = orjson.dumps(write.summary).decode()
            at = text.find("Probe")
            if at < 0:
                continue
            marker = text[at : text.index('"', at)]
            if marker in self.sent and marker not in self.latency:
                self.latency[marker] = write.at - self.sent[marker][0]

    def of(self, phase: str) -> list[float]:
        return [v for k, v in self.latency.items() if self.sent[k][1] == phase]

    async def _run(self) -> None:
        import random

        rng = random.Random(self.shop.domain)
        loop = asyncio.get_running_loop()
        next_at, n = loop.time(), 0
        while True:
            next_at += 1.0 / PROBE_RATE
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            customer_id = self.shop.store.random_customer_id(rng)
            if customer_id is None:
                continue
            n += 1
            marker = f"Probe{n}x{rng.randrange(10**6)}"
            try:
                await self.shop.store.update_customer(customer_id, first_name=marker)
            except Exception:
                continue
            self.sent[marker] = (time.time(), self.phase, customer_id)
            self.match()

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def shop_apsis_down(run: RunContext) -> Result:
    result = Result("shop-apsis-down")
    started = time.monotonic()
    fault_s = 15.0 if run.short else 60.0
    # As long as the outage: both p99s then come from as many probes (a p99 of 600 probes, the
    # 6th slowest, moved by 2x between runs with no fault at all).
    before_s = 10.0 if run.short else fault_s
    config = StackConfig(customers=200, extra_shops=OTHERS)
    async with stack(run, "shop-apsis-down", config) as s:
        s.subscribe()
        probes = [Probe(x) for x in s.extras]
        traffics = [Traffic(s.store, RATE, seed=3)] + [
            Traffic(x.store, RATE, seed=10 + i) for i, x in enumerate(s.extras)
        ]
        async with contextlib.AsyncExitStack() as running:
            for t in traffics:
                await running.enter_async_context(t)
            for p in probes:
                await running.enter_async_context(p)
            await asyncio.sleep(3.0)  # every account's token fetched, the pipeline warm
            for p in probes:
                p.phase = "before"
            await asyncio.sleep(before_s)
            for p in probes:
                p.phase = "outage"
            s.account.faults.start_outage(s.account.clock(), fault_s)
            await asyncio.sleep(fault_s)
            s.account.faults.end_outage()
            for p in probes:
                p.phase = "after"
            await asyncio.sleep(3.0)
        result.load = f"{len(traffics)} shops x {RATE:g} changes/s + {OTHERS} x {PROBE_RATE:g} probes/s"
        result.faults = f"one shop's APSIS down {fault_s:g} s"
        # Jobs the backoff parked are in no queue: `settle` would not wait for them.
        result.figures["backoff_closed_after_s"] = await _backoff_closed(s, 300.0)
        await finish(s, result, settle_s=300, all_customers=False)
        for x in s.extras:
            checked, problems = s.check_extra(x, sorted(set(x.store.overrides) | set(x.store.deleted)))
            result.checked += checked
            result.lost += len({p.split(":", 1)[0] for p in problems})
            result.problems += [f"{x.domain}: {p}" for p in problems[:MAX_LISTED]]
            failed = [r for r in x.store.deliverer.records.values() if r.state == "failed"]
            if failed:
                result.lost += len(failed)
                result.fail(f"{x.domain}: {len(failed)} webhooks never delivered")
        for p in probes:
            p.match()
        _latency_figures(run, result, probes)
        result.inputs = sum(t.changes for t in traffics) + sum(len(p.sent) for p in probes)
    result.seconds = round(time.monotonic() - started, 1)
    return result


async def _backoff_closed(s: Stack, limit_s: float) -> float | None:
    """Seconds until no shop backs off and none has parked jobs (None: not within `limit_s`)."""
    started = time.monotonic()
    domains = [DOMAIN, *(x.domain for x in s.extras)]
    while time.monotonic() - started < limit_s:
        held = sum([int(await s.redis.hlen(s.keys.held_jobs(d))) for d in domains])  # type: ignore[misc]
        open_ = int(await s.redis.scard(s.keys.backoff_shops))  # type: ignore[misc]
        if held == 0 and open_ == 0:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(1.0)
    return None


def _latency_figures(run: RunContext, result: Result, probes: list[Probe]) -> None:
    before = [v for p in probes for v in p.of("before")]
    outage = [v for p in probes for v in p.of("outage")]
    p99_before, p99_outage = _p99(before), _p99(outage)
    unmatched = sum(1 for p in probes for k in p.sent if k not in p.latency and p.sent[k][1] != "warmup")
    result.figures["others_p99_ms_before"] = round(p99_before * 1000, 1) if p99_before else None
    result.figures["others_p99_ms_outage"] = round(p99_outage * 1000, 1) if p99_outage else None
    result.figures["probes_before"] = len(before)
    result.figures["probes_outage"] = len(outage)
    # A probe whose marker was overwritten by a later edit of the same customer before its
    # webhook ran has no write of its own: not lost (the oracle checks the end state).
    result.figures["probes_overtaken"] = unmatched
    # The others' p99 per 10 s of the run (by the probe's send time): when in the outage it moved.
    start = min((at for p in probes for at, phase, _ in p.sent.values() if phase == "before"), default=0.0)
    buckets: dict[int, list[float]] = {}
    for p in probes:
        for marker, latency in p.latency.items():
            at, phase, _ = p.sent[marker]
            if phase != "warmup":
                buckets.setdefault(int((at - start) // 10), []).append(latency)
    result.figures["others_p99_ms_by_10s"] = [
        round((_p99(buckets[b]) or 0.0) * 1000) for b in range(max(buckets, default=-1) + 1) if b in buckets
    ]
    per_shop = {p.shop.domain: _p99(p.of("outage")) for p in probes}
    result.figures["worst_other_p99_ms_outage"] = round(
        max((v for v in per_shop.values() if v is not None), default=0.0) * 1000, 1
    )
    result.expect(bool(before) and bool(outage), "no probe latencies measured")
    if p99_before and p99_outage:
        ratio = p99_outage / p99_before
        result.figures["others_p99_ratio"] = round(ratio, 2)
        result.expect_timing(
            ratio <= P99_RATIO_GOAL,
            f"others' p99 during the outage {ratio:.2f}x before (goal <= {P99_RATIO_GOAL})",
            run.assert_timing,
        )
