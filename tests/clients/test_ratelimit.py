"""The shared limiter against the real Redis: counts, not tight timings."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Mapping
from typing import cast

import orjson
import pytest
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Limits
from sandbox.apsis.limits import SlidingWindow
from tests.clients.conftest import REDIS_URL, make_account, make_shop
from worker import metrics
from worker.ratelimit import (
    Bucket,
    RateLimiter,
    WaitTooLongError,
    apsis_account_bucket,
    apsis_profile_bucket,
    shopify_bucket,
)
from worker.ratelimit.limiter import Stage


async def probe(limiter: RateLimiter, bucket: Bucket) -> float:
    """The wait a request would have now, without reserving anything."""
    try:
        await limiter.acquire_bucket(bucket, max_wait_s=0)
    except WaitTooLongError as exc:
        return exc.wait_s
    return 0.0


async def test_burst_is_admitted_at_once_then_the_steady_rate(limiter: RateLimiter) -> None:
    bucket = Bucket("test:burst", rate_per_s=20, burst=10)
    waits = await asyncio.gather(*(limiter.acquire_bucket(bucket) for _ in range(30)))
    immediate = sum(1 for w in waits if w == 0)
    # Exactly the burst goes at once (one more at most if 50 ms passed between two scripts).
    assert 10 <= immediate <= 11
    # The other 20 were spread at 20/s: the last one waited about a second, none much longer.
    assert 0.7 <= max(waits) <= 1.5
    assert sorted(w for w in waits if w > 0)[0] < 0.1


async def test_two_processes_share_one_budget(keys: Keys, redis: Redis) -> None:
    other = Redis.from_url(REDIS_URL)
    try:
        first, second = RateLimiter(redis, keys), RateLimiter(other, keys)
        bucket = Bucket("test:shared", rate_per_s=1, burst=5)
        admitted = 0
        for lim in (first, second) * 5:
            try:
                await lim.acquire_bucket(bucket, max_wait_s=0.05)
                admitted += 1
            except WaitTooLongError:
                pass
        assert admitted == 5
    finally:
        await other.aclose()


async def test_steady_rate_over_time(limiter: RateLimiter) -> None:
    bucket = Bucket("test:steady", rate_per_s=50, burst=5)
    loop = asyncio.get_running_loop()
    done = 0
    deadline = loop.time() + 1.5

    async def worker() -> None:
        nonlocal done
        while loop.time() < deadline:
            await limiter.acquire_bucket(bucket)
            done += 1

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(8)))
    elapsed = loop.time() - started
    expected = 5 + 50 * elapsed
    # Never more than the bucket allows; not much less either (generous for a noisy machine).
    assert done <= expected + 8  # the 8 workers' last reservations may land after the deadline
    assert done >= 0.6 * expected


async def test_waiters_are_served_in_arrival_order_and_none_starves(limiter: RateLimiter) -> None:
    bucket = Bucket("test:fifo", rate_per_s=50, burst=1)
    finished: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire_bucket(bucket)
        finished.append(i)

    tasks = []
    for i in range(60):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.002)  # let each reach Redis before the next: a known arrival order
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert sorted(finished) == list(range(60))  # everyone was served
    in_order = sum(1 for a, b in itertools.pairwise(finished) if a < b)
    assert in_order >= 0.9 * (len(finished) - 1)


async def test_wait_too_long_reserves_nothing(limiter: RateLimiter) -> None:
    bucket = Bucket("test:refuse", rate_per_s=1, burst=1)
    await limiter.acquire_bucket(bucket)
    with pytest.raises(WaitTooLongError) as refused:
        await limiter.acquire_bucket(bucket, max_wait_s=0.1)
    assert 0.5 < refused.value.wait_s <= 1.0
    # The refusal did not push the bucket: the next one still waits at most a second.
    assert await probe(limiter, bucket) <= 1.0


async def test_hold_and_raise_level(limiter: RateLimiter) -> None:
    bucket = Bucket("test:hold", rate_per_s=10, burst=5)
    assert await probe(limiter, bucket) == 0
    assert await limiter.hold(bucket, 3.0)
    assert 2.5 < await probe(limiter, bucket) <= 3.0
    # Raising to a lower level than the current one changes nothing.
    assert not await limiter.raise_level(bucket, 1)


async def test_raise_level_makes_room_smaller(limiter: RateLimiter) -> None:
    bucket = Bucket("test:level", rate_per_s=2, burst=38)
    await limiter.raise_level(bucket, 36)  # only 2 slots left
    assert await probe(limiter, bucket) == 0
    assert await probe(limiter, bucket) == 0
    assert await probe(limiter, bucket) > 0.3


async def test_state_lists_levels_of_listed_buckets(limiter: RateLimiter) -> None:
    listed = Bucket("test:listed", rate_per_s=1, burst=10)
    hidden = Bucket("test:hidden", rate_per_s=1, burst=10, listed=False)
    for _ in range(4):
        await limiter.acquire_bucket(listed)
        await limiter.acquire_bucket(hidden)
    state = {s.name: s for s in await limiter.state()}
    assert set(state) == {"test:listed"}
    assert 3 < state["test:listed"].level <= 4
    assert state["test:listed"].burst == 10
    assert state["test:listed"].rate_per_s == pytest.approx(1)
    assert state["test:listed"].wait_s == 0


def test_buckets_follow_limits_with_the_safety_margin() -> None:
    shop = make_shop(limits=Limits(shopify_bucket_size=80, shopify_leak_per_s=4, safety=0.9))
    bucket = shopify_bucket(shop)
    assert bucket.rate_per_s == pytest.approx(3.6)
    assert bucket.burst == 72
    account = apsis_account_bucket(make_account(), Limits())
    assert account.rate_per_s == pytest.approx(95)
    # burst + one second of rate stays within the documented 100 in any second
    assert account.burst + account.rate_per_s <= 100
    profile = apsis_profile_bucket(make_account(), Limits(), "ks", "42")
    # a new customer's writes back to back; burst + pace within 9 of the 10 in any second
    assert profile.burst == 4 and profile.rate_per_s == pytest.approx(6)
    assert profile.burst + math.ceil(profile.rate_per_s) - 1 <= 9
    # `apsis_profile_burst = 1`: strictly spaced, never two within 100 ms
    strict = apsis_profile_bucket(make_account(), Limits(apsis_profile_burst=1), "ks", "42")
    assert strict.burst == 1 and strict.interval_us >= 100_000
    assert not profile.listed


async def test_a_profiles_writes_go_back_to_back_within_apsis_window(limiter: RateLimiter) -> None:
    """A new customer's few writes go at once, and any run of a profile's requests stays within
    APSIS's 10 a second per profile key, counted as the sandbox counts: a sliding window."""
    profile = apsis_profile_bucket(make_account(), Limits(), "ks", "window")
    sends: list[float] = []
    for _ in range(40):
        reserved, admitted, wait, _ = await limiter.reserve([Stage(profile)], 1, 60.0)
        assert (reserved, admitted) == (1, True)
        sec, micros = await limiter.redis.time()
        sends.append(sec + micros / 1e6 + wait)
    assert sends[3] - sends[0] < 0.05  # the first four back to back
    assert sends[4] - sends[0] > 0.1  # then the pace
    window = SlidingWindow(10, 1.0)
    assert [window.hit("profile", at) for at in sends] == [0.0] * 40


async def test_state_hash_holds_a_json_snapshot_for_status_readers(limiter: RateLimiter, keys: Keys) -> None:
    await limiter.acquire_bucket(Bucket("test:snap", rate_per_s=4, burst=8))
    raw = await cast("Awaitable[bytes | None]", limiter.redis.hget(keys.limiter("state"), "test:snap"))
    assert raw is not None
    snapshot = orjson.loads(raw)
    assert snapshot["rate_per_s"] == 4 and snapshot["burst"] == 8
    assert 0.9 < snapshot["level"] <= 1 and snapshot["wait_s"] == 0


def test_metrics_reach_registered_sinks() -> None:
    class Sink:
        def __init__(self) -> None:
            self.seen: list[tuple[str, dict[str, str], float]] = []

        def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None:
            self.seen.append((name, dict(labels or {}), value))

    sink = Sink()
    metrics.add_sink(sink)
    try:
        metrics.request_done("apsis", "GET", "/audience/sections", "200", 0.01)
        metrics.limiter_waited("apsis", 0.5)
    finally:
        metrics.remove_sink(sink)
    assert sink.seen == [
        (
            "shopsync_api_requests_total",
            {"api": "apsis", "method": "GET", "route": "/audience/sections", "status": "200"},
            1.0,
        ),
        ("shopsync_limiter_wait_seconds_total", {"bucket": "apsis"}, 0.5),
    ]


async def test_delay_moves_reservations_already_handed_out(limiter: RateLimiter) -> None:
    bucket = Bucket("test:shift", rate_per_s=4, burst=1, shiftable=True)
    await limiter.acquire_bucket(bucket)  # the burst
    waiter = asyncio.create_task(limiter.acquire_bucket(bucket))  # reserved ~0.25 s ahead
    await asyncio.sleep(0.05)
    assert await limiter.delay(bucket, 1.0, guard_s=0.5)
    assert not await limiter.delay(bucket, 1.0)  # the same congestion again: applied once
    assert await waiter >= 1.0  # slept its reservation, then the delay
    # New acquires come after the delayed schedule too.
    with pytest.raises(WaitTooLongError) as refused:
        await limiter.acquire_bucket(bucket, max_wait_s=0)
    assert refused.value.wait_s > 0


async def test_delay_on_an_idle_bucket_holds_new_acquires(limiter: RateLimiter) -> None:
    bucket = Bucket("test:idle-delay", rate_per_s=10, burst=20, shiftable=True)
    assert await limiter.delay(bucket, 2.0)
    with pytest.raises(WaitTooLongError) as refused:
        await limiter.acquire_bucket(bucket, max_wait_s=0)
    assert 1.5 < refused.value.wait_s <= 2.0


async def test_pool_wide_leases_cap_concurrency_across_limiters(keys: Keys, redis: Redis) -> None:
    other = Redis.from_url(REDIS_URL)
    limiters = [RateLimiter(redis, keys), RateLimiter(other, keys)]
    active = peak = done = 0

    async def work(limiter: RateLimiter) -> None:
        nonlocal active, peak, done
        async with limiter.lease("test:api", 3):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
        done += 1

    try:
        await asyncio.gather(*(work(limiters[i % 2]) for i in range(20)))
    finally:
        await other.aclose()
    assert done == 20 and peak == 3
    assert await redis.zcard(keys.limiter("test:api:leases")) == 0  # every lease given back


async def test_a_lost_lease_expires(limiter: RateLimiter, keys: Keys) -> None:
    crashed = limiter.lease("test:lost", 1, ttl_s=0.2)
    await crashed.__aenter__()  # a process that dies holding its lease never releases it
    with pytest.raises(WaitTooLongError):
        async with limiter.lease("test:lost", 1, max_wait_s=0.05):
            pass
    async with limiter.lease("test:lost", 1, max_wait_s=2):  # granted once the lease expired
        pass
