"""Per-shop backoff: a shop whose Shopify or APSIS keeps failing is parked alone; the others go on.

Every API answer a worker process gets inside a shop's job passes `ApiObserver` (a metrics sink:
the clients already report each request's status there; the shop is the job's, `worker.lanes`).
A shop trips when, within the last `WINDOW_S`, at least `MIN_FAILURES` answers were failures
(429, 5xx, or no answer at all), they made at least `FAIL_SHARE` of its answers, and they span
`MIN_SPAN_S` or more: a long run of trouble, not one burst; or at once when its last
`MIN_FAILURES` or more answers from one API all failed over `MIN_SPAN_S` (an outage: the
successes from before it would otherwise hold the share under `FAIL_SHARE` for most of the
window). Tripping writes the shop's backoff record (`Keys.shop_backoff`: `until`, `period_s`,
`reason`, `opened_at`, `trips`) in one script, so the pool agrees on one period: `FIRST_S`, then
doubled at each trip that follows a release without a recovery, up to `MAX_S`.

While a shop backs off (each process refreshes its view every `TICK_S`, `worker.lanes`):
- the rate limiter refuses its requests before sending (`ShopParkedError`), so jobs already
  running stop retrying against a failing API at their next attempt;
- `run_job` parks its real-time and apply jobs (worker/held.py's hash, reason `backoff: ...`)
  instead of retrying them: no try is spent, nothing turns into a dead letter;
- the fair dispatcher skips its full-sync batches (they wait in its ready list) and a batch that
  meets the backoff mid-way is parked at the front of that list (worker/fair_dispatch.py).
When `until` passes, the backoff is half-open: each process puts `PROBE_JOBS` parked jobs back
on their queues a tick (`held.release`), and they probe the API. Answers that succeed close the
backoff (record deleted, next trip starts at `FIRST_S` again) and the rest of the parked jobs go
back; `PROBE_FAILURES` failed answers trip it again, for twice as long.

Each shop's last failed answer (or failed job) is kept in `Keys.shop_errors` for the status pages.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog

from core.keys import Keys
from core.redis_conn import hgetall, run_script, typed
from worker import lanes
from worker.held import HeldJob, hold, release

log = structlog.get_logger("worker.backoff")

WINDOW_S = 30.0
MIN_FAILURES = 8
FAIL_SHARE = 0.8
MIN_SPAN_S = 5.0
RECOVERED_AFTER = 3  # successful answers in a row after a release that close the backoff
PROBE_FAILURES = 3  # failed answers after a release that reopen the backoff at once
# Parked jobs a process puts back per tick while the backoff is half-open: a few probe the API;
# the rest follow once answers succeed (the backoff closes), so a shop whose API is still down
# does not fill the pool's job slots with failing jobs at every lapse.
PROBE_JOBS = 3
FIRST_S = 10.0
MAX_S = 300.0
TICK_S = 1.0
REQUESTS_METRIC = "shopsync_api_requests_total"

# KEYS: backoff hash, backoff shops. ARGV: now, first, max, reason, shop.
# Returns the period (s) of the backoff opened now, or 0 when one is already open.
_TRIP = """
local now = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'until') or '0') > now then return '0' end
local period = tonumber(redis.call('HGET', KEYS[1], 'period_s') or '0')
if period > 0 then period = math.min(period * 2, tonumber(ARGV[3])) else period = tonumber(ARGV[2]) end
redis.call('HSET', KEYS[1], 'until', tostring(now + period), 'period_s', tostring(period),
  'reason', ARGV[4], 'opened_at', tostring(now))
redis.call('HINCRBY', KEYS[1], 'trips', 1)
redis.call('SADD', KEYS[2], ARGV[5])
return tostring(period)
"""


@dataclass
class _Answers:
    events: deque[tuple[float, bool]] = field(default_factory=deque)
    streak: int = 0  # successful answers in a row
    # Per API: (failed answers in a row, when the first of them came, when the last). Per API,
    # since a shop whose APSIS is down still gets answers from its Shopify, and those succeed.
    failed_runs: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    last_error: dict[str, Any] | None = None
    error_changed: bool = False


class ApiObserver:
    """A `worker.metrics` sink that keeps, per shop, the last `WINDOW_S` of API answers."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.shops: dict[str, _Answers] = {}
        self.counts: Any = None  # a metrics sink for the per-shop answer counter (the shared metrics)

    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None:
        if name != REQUESTS_METRIC or labels is None:
            return
        shop = lanes.SHOP.get()
        if shop is None:
            return
        status = str(labels.get("status", ""))
        failed = status in ("error", "429") or status.startswith("5")
        api = str(labels.get("api", ""))
        if self.counts is not None:
            outcome = "throttled" if status == "429" else "failed" if failed else "ok"
            self.counts.inc(
                "shopsync_shop_api_requests_total", {"shop": shop, "api": api, "outcome": outcome}
            )
        answers = self.shops.setdefault(shop, _Answers())
        now = self.clock()
        answers.events.append((now, failed))
        answers.streak = 0 if failed else answers.streak + 1
        if failed:
            count, since, _last = answers.failed_runs.get(api, (0, now, now))
            answers.failed_runs[api] = (count + 1, since, now)
        else:
            answers.failed_runs.pop(api, None)
        if failed:
            answers.last_error = {
                "at": time.time(),
                "api": labels.get("api", ""),
                "status": status,
                "route": f"{labels.get('method', '')} {labels.get('route', '')}".strip(),
            }
            answers.error_changed = True

    def verdict(self, shop: str) -> str | None:
        """The reason to back off, when the shop's recent answers call for it."""
        answers = self.shops.get(shop)
        if answers is None:
            return None
        error = answers.last_error or {}
        for api, (count, since, last) in answers.failed_runs.items():
            if count >= MIN_FAILURES and last - since >= MIN_SPAN_S:
                # Nothing but failures for MIN_SPAN_S: trip now, without waiting for the
                # successes from before the outage to leave the window (that took 20 s).
                return f"{count} {api} answers in a row failed over {last - since:.0f} s (last: {error.get('status', '?')})"
        now = self.clock()
        while answers.events and answers.events[0][0] < now - WINDOW_S:
            answers.events.popleft()
        failures = [t for t, failed in answers.events if failed]
        if len(failures) < MIN_FAILURES or len(failures) < FAIL_SHARE * len(answers.events):
            return None
        if failures[-1] - failures[0] < MIN_SPAN_S:
            return None
        return f"{len(failures)} of {len(answers.events)} {error.get('api', 'API')} answers failed (last: {error.get('status', '?')})"

    def forget(self, shop: str) -> None:
        """Start the shop's window afresh (after a trip: the next one needs new failures)."""
        answers = self.shops.get(shop)
        if answers is not None:
            answers.events.clear()
            answers.failed_runs.clear()


async def trip(redis: aioredis.Redis, keys: Keys, shop: str, reason: str) -> float:
    """Open the shop's backoff (pool-wide); its period, or 0 when one was already open."""
    now = time.time()
    period = await run_script(
        redis,
        _TRIP,
        [keys.shop_backoff(shop), keys.backoff_shops],
        [f"{now:.3f}", FIRST_S, MAX_S, reason, shop],
    )
    return float(period)


async def close(redis: aioredis.Redis, keys: Keys, shop: str) -> bool:
    """The shop recovered: forget its backoff (the next trip starts at `FIRST_S`)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.shop_backoff(shop))
        pipe.srem(keys.backoff_shops, shop)
        deleted, _ = await pipe.execute()
    return bool(deleted)


async def records(redis: aioredis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """Every shop's backoff record (open or lapsed and not yet recovered)."""
    shops = sorted(s.decode() for s in await typed(redis.smembers(keys.backoff_shops)))
    out: dict[str, dict[str, Any]] = {}
    for shop in shops:
        raw = await hgetall(redis, keys.shop_backoff(shop))
        if raw:
            out[shop] = {k.decode(): _number_or_text(v.decode()) for k, v in raw.items()}
    return out


async def record_error(redis: aioredis.Redis, keys: Keys, shop: str, error: Mapping[str, Any]) -> None:
    await typed(redis.hset(keys.shop_errors, shop, orjson.dumps(dict(error)).decode()))


async def park(redis: aioredis.Redis, keys: Keys, job: HeldJob) -> None:
    """Keep a job of a parked shop (backing off, or out of the installations file) until it is back."""
    await hold(redis, keys, job)
    log.info("job_parked", shop=job.shop, job_id=job.job_id, reason=job.reason)


async def tick(
    redis: aioredis.Redis,
    keys: Keys,
    observer: ApiObserver,
    active_shops: Iterable[str],
    blocked: Mapping[str, str],
) -> None:
    """One round of a process: trip or close from what it saw, refresh its view of who backs
    off, and release the parked jobs of shops whose backoff lapsed (`blocked`: shops whose jobs
    must stay parked for another reason, such as needing approval or a removed shop)."""
    for shop, answers in list(observer.shops.items()):
        if answers.error_changed and answers.last_error is not None:
            answers.error_changed = False
            await record_error(redis, keys, shop, answers.last_error)
        reason = observer.verdict(shop)
        if reason is not None:
            period = await trip(redis, keys, shop, reason)
            observer.forget(shop)
            if period:
                log.warning("shop_backoff_open", shop=shop, period_s=period, reason=reason)
    now = time.time()
    found = await records(redis, keys)
    view: dict[str, tuple[float, str]] = {}
    active = set(active_shops)
    for shop, record in found.items():
        until = float(record.get("until") or 0)
        view[shop] = (until, str(record.get("reason", "")))
        seen = observer.shops.get(shop)
        recovered = seen is not None and seen.streak >= RECOVERED_AFTER
        if until <= now and (recovered or until < now - MAX_S):
            if await close(redis, keys, shop):
                log.info("shop_backoff_closed", shop=shop, trips=record.get("trips"))
            if shop in active and shop not in blocked:
                await release(redis, keys, shop)  # the rest of its parked jobs
            continue
        if until <= now and seen is not None and _probe_failed(seen, observer.clock() - (now - until)):
            # Half-open: the released jobs' first answers failed again. Reopen at once (twice
            # as long) rather than wait for a full window of failures, so a shop whose API is
            # still down does not fill the pool's job slots with retrying jobs meanwhile.
            period = await trip(redis, keys, shop, f"probe failed: {record.get('reason', '')}"[:200])
            observer.forget(shop)
            if period:
                log.warning("shop_backoff_open", shop=shop, period_s=period, reason="probe failed")
                view[shop] = (now + period, str(record.get("reason", "")))
            continue
        if until <= now and shop in active and shop not in blocked:
            released = await release(redis, keys, shop, limit=PROBE_JOBS)
            if released:
                log.info("shop_backoff_probing", shop=shop, jobs_released=released)
    lanes.set_parked(view)


def _probe_failed(answers: _Answers, since: float) -> bool:
    """At least `PROBE_FAILURES` failed answers since the backoff lapsed (`since`, the observer's
    clock) and no success in a row since the last of them."""
    failures = sum(1 for t, failed in answers.events if failed and t >= since)
    return failures >= PROBE_FAILURES and answers.streak == 0


def _number_or_text(text: str) -> Any:
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text
