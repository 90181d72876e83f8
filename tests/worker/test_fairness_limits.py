"""A shop's share of a shared APSIS account, the full sync's headroom for real-time work, the lane
semaphores and the per-shop backoff's decisions, against real Redis."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.keys import Keys
from core.redis_conn import typed
from mappings.installation import ApsisAccount, Limits
from worker import lanes, shop_backoff
from worker.held import HeldJob
from worker.ratelimit import RateLimiter, WaitTooLongError, apsis_account_bucket, apsis_profile_bucket
from worker.ratelimit.limiter import LaneSemaphore, Stage

ACCOUNT = ApsisAccount("http://apsis", "shared-client", "secret", "ks")
LIMITS = Limits(apsis_requests_per_s=100.0, safety=1.0)


def _in(shop: str | None, lane: lanes.Lane) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(lanes.SHOP.set, shop)
    ctx.run(lanes.LANE.set, lane)
    return ctx


async def _early_in_a_second(redis: aioredis.Redis) -> None:
    """Wait, if need be, until Redis's clock is early in a second: usage seeded for the last whole
    second then counts for the rest of this one (at the next second it is no longer the last)."""
    _sec, micros = await redis.time()
    if micros > 300_000:
        await asyncio.sleep((1_000_000 - micros) / 1e6 + 0.01)


async def _seed_usage(redis: aioredis.Redis, keys: Keys, who: str, count: int) -> None:
    """`who` made `count` requests in the last whole second (as the share stage of `scripts.CHAIN` counts them)."""
    await _early_in_a_second(redis)  # so it stays the last second while the test reserves
    sec = int((await redis.time())[0])
    await typed(redis.hset(keys.limiter("apsis-share-use:shared-client"), f"{who}|{sec - 1}", str(count)))


async def _share_slots(limiter: RateLimiter, who: str, lane: lanes.Lane, n: int) -> list[float]:
    """Reserve `n` share slots at once and return when each one is due, in seconds after the
    first reservation by Redis's clock (the script's): each wait plus the time the calls before
    it took, so a busy machine does not shift the schedule the test reads."""
    times: list[float] = []
    waits = await _share_waits(limiter, who, lane, n, clock=times)
    return [wait + (at - times[0]) for wait, at in zip(waits, times, strict=True)]


async def _share_waits(
    limiter: RateLimiter, who: str, lane: lanes.Lane, n: int, clock: list[float] | None = None
) -> list[float]:
    """Reserve `n` share slots at once (no sleeping) and return each one's wait (and, into
    `clock`, Redis's time just before each reservation)."""
    waits = []
    bucket = apsis_account_bucket(ACCOUNT, LIMITS)
    for _ in range(n):
        if clock is not None:
            sec, micros = await limiter.redis.time()
            clock.append(sec + micros / 1e6)
        _done, _ok, wait, _cap = await limiter.reserve([Stage(bucket, f"{who}/{lane}")], 1, 60.0)
        waits.append(wait)
    return waits


async def test_alone_a_shop_has_the_whole_account(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    assert await _share_waits(limiter, "a.myshopify.com", "realtime", 50) == [0.0] * 50


async def test_two_busy_shops_split_the_account(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    await _seed_usage(redis, keys, "b.myshopify.com/realtime", 90)  # B took 90 of 100 last second
    slots = await _share_slots(limiter, "a.myshopify.com", "realtime", 12)
    # A's cap: max(100 / 2, 100 - 90) = 50/s, a burst of 2: the k-th slot 20 ms after the one before.
    assert slots[:2] == pytest.approx([0.0, 0.0], abs=0.005)
    assert slots[11] == pytest.approx(10 * 0.020, abs=0.005)


async def test_a_quiet_neighbour_leaves_its_unused_part(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    await _seed_usage(redis, keys, "b.myshopify.com/realtime", 10)
    slots = await _share_slots(limiter, "a.myshopify.com", "realtime", 12)
    assert slots[11] == pytest.approx(10 / 90, abs=0.005)  # cap 100 - 10 = 90/s


async def test_a_full_sync_leaves_headroom_for_real_time(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    await _seed_usage(redis, keys, "b.myshopify.com/realtime", 20)
    slots = await _share_slots(limiter, "a.myshopify.com", "bulk", 12)
    # max(50, 100 - 20) - 10 (headroom) = 70/s: with B's 20/s the account stays under 100/s.
    assert slots[11] == pytest.approx(10 / 70, abs=0.005)


async def test_acquire_takes_the_share_inside_a_shops_job(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    bucket = apsis_account_bucket(ACCOUNT, LIMITS)
    await _seed_usage(redis, keys, "b.myshopify.com/bulk", 100)
    ctx = _in("a.myshopify.com", "realtime")
    started = time.monotonic()
    for _ in range(6):
        await asyncio.get_running_loop().create_task(limiter.acquire_bucket(bucket), context=ctx)
    # Share 50/s (burst 2) then the account bucket (100/s): about 4 * 20 ms.
    assert time.monotonic() - started >= 0.07
    state = await typed(
        redis.hget(keys.limiter("state"), "apsis-share:shared-client:a.myshopify.com/realtime")
    )
    assert state is not None  # listed for the status pages


async def test_a_backing_off_shop_sends_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    bucket = apsis_account_bucket(ACCOUNT, LIMITS)
    lanes.set_parked({"a.myshopify.com": (time.time() + 30, "5 of 5 apsis answers failed")})
    try:
        with pytest.raises(lanes.ShopParkedError):
            await asyncio.get_running_loop().create_task(
                limiter.acquire_bucket(bucket), context=_in("a.myshopify.com", "realtime")
            )
        # Another shop on the same account goes on.
        await asyncio.get_running_loop().create_task(
            limiter.acquire_bucket(bucket), context=_in("b.myshopify.com", "realtime")
        )
    finally:
        lanes.set_parked({})


async def test_bulk_requests_never_hold_real_time_permits() -> None:
    semaphore = LaneSemaphore(4)
    loop = asyncio.get_running_loop()

    async def hold_bulk(release: asyncio.Event) -> None:
        async with semaphore:
            await release.wait()

    release = asyncio.Event()
    bulk = [loop.create_task(hold_bulk(release), context=_in("a", "bulk")) for _ in range(10)]
    await asyncio.sleep(0.01)
    # Bulk has its 3 permits (three quarters of 4) and 7 waiting; real time gets in at once.
    got = loop.create_task(asyncio.wait_for(semaphore.acquire(), 0.1), context=_in("b", "realtime"))
    assert await got is True
    loop.call_soon(semaphore.release, context=_in("b", "realtime"))
    release.set()
    await asyncio.gather(*bulk)


def _answers(observer: shop_backoff.ApiObserver, ctx: contextvars.Context) -> Any:
    """A function that feeds the observer one API answer inside `ctx`'s shop job."""

    def answer(status: str, api: str = "apsis") -> None:
        labels = {"api": api, "status": status, "route": "/x"}
        ctx.run(observer.inc, "shopsync_api_requests_total", labels)

    return answer


def test_backoff_verdict_needs_a_long_run_of_failures() -> None:
    now = [1000.0]
    observer = shop_backoff.ApiObserver(clock=lambda: now[0])
    ctx = _in("a.myshopify.com", "realtime")
    answer = _answers(observer, ctx)

    for _ in range(20):  # a burst of 503s within a second: not a long outage
        answer("503")
    assert observer.verdict("a.myshopify.com") is None
    for _ in range(10):
        now[0] += 1.0
        answer("503")
    assert "apsis" in (observer.verdict("a.myshopify.com") or "")
    # Mostly successes: no backoff, whatever the failures.
    for _ in range(100):
        answer("200")
    assert observer.verdict("a.myshopify.com") is None
    assert observer.verdict("b.myshopify.com") is None  # another shop saw nothing


def test_an_outage_trips_on_failures_in_a_row_whatever_came_before() -> None:
    now = [1000.0]
    observer = shop_backoff.ApiObserver(clock=lambda: now[0])
    ctx = _in("a.myshopify.com", "realtime")
    answer = _answers(observer, ctx)

    for _ in range(200):  # a busy, healthy shop: its successes fill the window
        now[0] += 0.1
        answer("200")
    for _ in range(shop_backoff.MIN_FAILURES - 1):  # then APSIS goes down; Shopify still answers
        now[0] += 0.5
        answer("503")
        answer("200", "shopify")
    now[0] += 0.5
    answer("503")
    assert observer.verdict("b.myshopify.com") is None  # another shop goes on
    # Far under FAIL_SHARE of the window, but nothing but failures for MIN_SPAN_S: trip then.
    first_failure = 1020.5
    while observer.verdict("a.myshopify.com") is None:
        now[0] += 0.5
        answer("503")
    assert now[0] == pytest.approx(first_failure + shop_backoff.MIN_SPAN_S)
    assert "in a row" in (observer.verdict("a.myshopify.com") or "")
    observer.forget("a.myshopify.com")  # tripped: the next trip needs failures of its own
    assert observer.verdict("a.myshopify.com") is None


async def test_trip_doubles_and_close_resets(redis: aioredis.Redis, keys: Keys) -> None:
    shop = "a.myshopify.com"
    assert await shop_backoff.trip(redis, keys, shop, "503s") == shop_backoff.FIRST_S
    assert await shop_backoff.trip(redis, keys, shop, "503s") == 0  # already open
    await typed(redis.hset(keys.shop_backoff(shop), "until", str(time.time() - 1)))  # lapsed, not recovered
    assert await shop_backoff.trip(redis, keys, shop, "503s") == 2 * shop_backoff.FIRST_S
    records = await shop_backoff.records(redis, keys)
    assert records[shop]["trips"] == 2 and records[shop]["reason"] == "503s"
    assert await shop_backoff.close(redis, keys, shop)
    assert await shop_backoff.trip(redis, keys, shop, "429s") == shop_backoff.FIRST_S


async def test_a_lapsed_backoff_probes_with_a_few_jobs_then_releases_the_rest(
    redis: aioredis.Redis, keys: Keys
) -> None:
    shop = "a.myshopify.com"
    observer = shop_backoff.ApiObserver()
    for n in range(10):
        job = HeldJob(
            f"job-{n}", "sync_customer", [{"n": n}], keys.realtime_queue, shop, "backoff: 503s", 0.0
        )
        await shop_backoff.park(redis, keys, job)
    await shop_backoff.trip(redis, keys, shop, "503s")
    await typed(redis.hset(keys.shop_backoff(shop), "until", str(time.time() - 0.1)))  # lapsed

    async def queued() -> int:
        return int(await typed(redis.zcard(keys.realtime_queue)))

    await shop_backoff.tick(redis, keys, observer, [shop], {})
    assert await queued() == shop_backoff.PROBE_JOBS  # half-open: a few probe, the rest wait
    assert lanes.probing(shop, time.time()) and lanes.parked(shop, time.time()) is None
    ctx = _in(shop, "realtime")
    for _ in range(shop_backoff.RECOVERED_AFTER):  # the probes' answers succeed
        ctx.run(observer.inc, "shopsync_api_requests_total", {"api": "apsis", "status": "200", "route": "/x"})
    await shop_backoff.tick(redis, keys, observer, [shop], {})
    assert await queued() == 10  # closed: every parked job is back on its queue
    assert await shop_backoff.records(redis, keys) == {}
    assert int(await typed(redis.hlen(keys.held_jobs(shop)))) == 0


# --- one round trip for the slots that are free (scripts.CHAIN) --------------------------------


def _counting(limiter: RateLimiter) -> list[int]:
    """Count the limiter's CHAIN calls and the stages each was sent."""
    calls: list[int] = []
    chain = limiter._chain

    async def counted(keys: list[str], args: list[Any]) -> Any:
        calls.append(int(args[0]))
        return await chain(keys=keys, args=args)

    limiter._chain = counted  # type: ignore[assignment]
    return calls


async def _tat_s(redis: aioredis.Redis, key: str) -> float:
    return int(await typed(redis.get(key)) or 0) / 1e6


async def test_free_slots_of_a_write_are_taken_in_one_round_trip(redis: aioredis.Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    calls = _counting(limiter)
    profile = apsis_profile_bucket(ACCOUNT, LIMITS, "ks", "42")
    account = apsis_account_bucket(ACCOUNT, LIMITS)
    await _seed_usage(redis, keys, "b.myshopify.com/realtime", 10)  # a neighbour: A's share is capped
    ctx = _in("a.myshopify.com", "realtime")
    waited = await asyncio.get_running_loop().create_task(
        limiter.acquire_all([profile, account]), context=ctx
    )
    assert waited == 0.0
    assert calls == [3]  # the profile's bucket, A's share, the account: one script
    share = keys.limiter("apsis-share:shared-client:a.myshopify.com/realtime")
    for key in (keys.limiter(profile.name), share, keys.limiter(account.name)):
        assert await typed(redis.get(key)) is not None, key
    usage = await typed(redis.hgetall(keys.limiter("apsis-share-use:shared-client")))
    assert any(field.startswith(b"a.myshopify.com/realtime|") for field in usage)


async def test_a_stage_that_waits_reserves_the_next_ones_only_when_it_is_due(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys)
    calls = _counting(limiter)
    profile = apsis_profile_bucket(ACCOUNT, LIMITS, "ks", "43")
    account = apsis_account_bucket(ACCOUNT, LIMITS)
    await limiter.hold(profile, 0.3)  # the profile's next slot is 0.3 s away
    sec, micros = await redis.time()
    asked_at = sec + micros / 1e6
    waited = await limiter.acquire_all([profile, account])  # outside a shop's job: no share stage
    assert 0.25 <= waited <= 1.0
    assert calls == [2, 1]  # stopped at the profile's wait; the account's slot after the sleep
    # The account's slot was reserved after the wait (its TAT: reservation time + one interval).
    reserved_at = await _tat_s(redis, keys.limiter(account.name)) - account.interval_us / 1e6
    assert reserved_at >= asked_at + 0.25


async def test_a_refused_stage_names_its_bucket_and_keeps_the_ones_before(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys)
    profile = apsis_profile_bucket(ACCOUNT, LIMITS, "ks", "44")
    account = apsis_account_bucket(ACCOUNT, LIMITS)
    await limiter.hold(account, 5.0)
    before = await typed(redis.get(keys.limiter(account.name)))
    with pytest.raises(WaitTooLongError) as refused:
        await limiter.acquire_all([profile, account], max_wait_s=1.0)
    assert refused.value.bucket == account
    assert refused.value.wait_s > 1.0
    assert await typed(redis.get(keys.limiter(account.name))) == before  # nothing reserved there
    assert await typed(redis.get(keys.limiter(profile.name))) is not None  # taken, as one at a time
