"""The fair full-sync dispatcher against real Redis: weighted round-robin across shops, the
look-ahead bound, parked shops (removed from the file, backing off) skipped, nothing lost."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from core.jobs import JOB_TTL_MS, job_bytes
from core.keys import Keys
from core.redis_conn import typed
from worker import fair_dispatch, realtime_lag
from worker.realtime_lag import RealtimeLag


async def _ready(redis: aioredis.Redis, keys: Keys, shop: str, n: int) -> list[str]:
    ids = [f"fullsync:{shop}:batch:{i}" for i in range(n)]
    async with redis.pipeline(transaction=True) as pipe:
        for job_id in ids:
            pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, job_bytes("full_sync_batch", (shop, 0)))
            fair_dispatch.push_ready(pipe, keys, shop, job_id)
        await pipe.execute()
    return ids


async def _cleanup(redis: aioredis.Redis, ids: list[str]) -> None:
    if ids:
        await redis.delete(*(f"arq:job:{i}" for i in ids))


async def test_weighted_round_robin_across_shops(redis: aioredis.Redis, keys: Keys) -> None:
    await fair_dispatch.set_weights(
        redis, keys, {"a.myshopify.com": 2, "b.myshopify.com": 1, "c.myshopify.com": 1}
    )
    ids = [
        *await _ready(redis, keys, "a.myshopify.com", 8),
        *await _ready(redis, keys, "b.myshopify.com", 8),
        *await _ready(redis, keys, "c.myshopify.com", 2),
    ]
    try:
        picked = await fair_dispatch.dispatch(redis, keys, lookahead=100)
        # Smooth weighted round-robin: per round of four, A twice, B and C once each.
        a, b, c = "a.myshopify.com", "b.myshopify.com", "c.myshopify.com"
        assert picked[:4] == [a, b, c, a]
        for start in range(0, 8, 4):
            window = picked[start : start + 4]
            assert (window.count(a), window.count(b), window.count(c)) == (2, 1, 1)
        assert sorted(picked) == sorted(
            ["a.myshopify.com"] * 8 + ["b.myshopify.com"] * 8 + ["c.myshopify.com"] * 2
        )
        # C done, A keeps twice B's share: in the next 6 picks A four times, B twice.
        assert (picked[8:14].count(a), picked[8:14].count(b)) == (4, 2)
        # Every job is on the queue exactly once, none left in a ready list.
        queued = {m.decode() for m in await redis.zrange(keys.fullsync_queue, 0, -1)}
        assert queued == set(ids)
        for shop in ("a", "b", "c"):
            assert await typed(redis.llen(keys.fair_ready(f"{shop}.myshopify.com"))) == 0
    finally:
        await _cleanup(redis, ids)


async def test_late_shop_is_served_at_its_turn_not_after_the_backlog(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await fair_dispatch.set_weights(redis, keys, {"a.myshopify.com": 1, "b.myshopify.com": 1})
    ids = await _ready(redis, keys, "a.myshopify.com", 20)
    try:
        first = await fair_dispatch.dispatch(redis, keys, lookahead=4)
        assert first == ["a.myshopify.com"] * 4
        # Nothing started: the look-ahead is full, nothing more is dispatched.
        assert await fair_dispatch.dispatch(redis, keys, lookahead=4) == []
        ids += await _ready(redis, keys, "b.myshopify.com", 5)  # B starts its sync later
        # Two of A's dispatched jobs finish (arq drops them from the queue): two slots, B first.
        done = [m.decode() for m in await redis.zrange(keys.fullsync_queue, 0, 1)]
        await redis.zrem(keys.fullsync_queue, *done)
        # B's first batch is among the next two, not behind A's sixteen waiting ones.
        assert sorted(await fair_dispatch.dispatch(redis, keys, lookahead=4)) == [
            "a.myshopify.com",
            "b.myshopify.com",
        ]
        # A job that started (arq's in-progress mark) no longer counts as waiting.
        running = (await redis.zrange(keys.fullsync_queue, 0, 0))[0].decode()
        await redis.set(f"arq:in-progress:{running}", b"1", px=5000)
        assert await fair_dispatch.dispatch(redis, keys, lookahead=4) == ["a.myshopify.com"]
        assert await typed(redis.scard(keys.fair_inflight)) == 5
        # From here on the two alternate as slots free up.
        for _ in range(3):
            await redis.zrem(keys.fullsync_queue, (await redis.zrange(keys.fullsync_queue, -1, -1))[0])
        assert await fair_dispatch.dispatch(redis, keys, lookahead=4) == [
            "b.myshopify.com",
            "a.myshopify.com",
            "b.myshopify.com",
        ]
    finally:
        await _cleanup(redis, ids)


async def test_parked_shops_are_skipped_and_keep_their_jobs(redis: aioredis.Redis, keys: Keys) -> None:
    await fair_dispatch.set_weights(
        redis, keys, {"a.myshopify.com": 1, "b.myshopify.com": 1, "c.myshopify.com": 1}
    )
    ids = [
        *await _ready(redis, keys, "a.myshopify.com", 3),
        *await _ready(redis, keys, "b.myshopify.com", 3),
        *await _ready(redis, keys, "c.myshopify.com", 3),
    ]
    try:
        dropped = await fair_dispatch.set_weights(redis, keys, {"a.myshopify.com": 1, "c.myshopify.com": 1})
        assert dropped == ["b.myshopify.com"]  # removed from the installations file
        await typed(
            redis.hset(keys.shop_backoff("c.myshopify.com"), "until", str(time.time() + 60))
        )  # backing off
        picked = await fair_dispatch.dispatch(redis, keys, lookahead=100)
        assert picked == ["a.myshopify.com"] * 3
        assert await typed(redis.llen(keys.fair_ready("b.myshopify.com"))) == 3
        assert await typed(redis.llen(keys.fair_ready("c.myshopify.com"))) == 3
        assert await fair_dispatch.is_ready(
            redis, keys, "b.myshopify.com", "fullsync:b.myshopify.com:batch:1"
        )
        # Back in the file, backoff over: their jobs go out, none lost, none twice.
        await fair_dispatch.set_weights(
            redis, keys, {"a.myshopify.com": 1, "b.myshopify.com": 1, "c.myshopify.com": 1}
        )
        await typed(redis.hset(keys.shop_backoff("c.myshopify.com"), "until", str(time.time() - 1)))
        picked = await fair_dispatch.dispatch(redis, keys, lookahead=100)
        assert sorted(picked) == ["b.myshopify.com"] * 3 + ["c.myshopify.com"] * 3
        assert await redis.zcard(keys.fullsync_queue) == 9
    finally:
        await _cleanup(redis, ids)


async def test_park_batch_puts_it_first_in_its_shops_list(redis: aioredis.Redis, keys: Keys) -> None:
    await fair_dispatch.set_weights(redis, keys, {"a.myshopify.com": 1})
    ids = await _ready(redis, keys, "a.myshopify.com", 2)
    new_id = await fair_dispatch.park_batch(redis, keys, "fs-1", 7, "a.myshopify.com")
    ids.append(new_id)
    try:
        first: object = await typed(redis.lindex(keys.fair_ready("a.myshopify.com"), 0))
        pending: object = await typed(redis.hget(f"{keys.full_sync_record('fs-1')}:pending", "7"))
        assert first == pending == new_id.encode()
        assert await redis.exists(f"arq:job:{new_id}")
    finally:
        await _cleanup(redis, ids)


async def test_while_realtime_is_behind_batches_make_way_but_never_stop(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fair_dispatch, "BEHIND_EVERY_S", 0.3)
    await fair_dispatch.set_weights(redis, keys, {"a.myshopify.com": 1})
    ids = await _ready(redis, keys, "a.myshopify.com", 10)
    try:
        await redis.set(keys.realtime_behind, "1", px=60_000)
        assert len(await fair_dispatch.dispatch(redis, keys, lookahead=100)) == 1
        assert await fair_dispatch.dispatch(redis, keys, lookahead=100) == []  # one in flight
        # Running counts as in flight too: marked in progress, it still holds the place.
        first = (await redis.zrange(keys.fullsync_queue, 0, 0))[0].decode()
        await redis.set(f"arq:in-progress:{first}", "1", px=60_000)
        assert await fair_dispatch.dispatch(redis, keys, lookahead=100) == []
        # Done (arq drops it from the queue), but the next may go only BEHIND_EVERY_S later.
        await redis.zrem(keys.fullsync_queue, first)
        await redis.delete(f"arq:in-progress:{first}")
        assert await fair_dispatch.dispatch(redis, keys, lookahead=100) == []
        await asyncio.sleep(0.35)
        assert len(await fair_dispatch.dispatch(redis, keys, lookahead=100)) == 1
        # Real-time on time again (the mark lapsed): the look-ahead as usual.
        await redis.delete(keys.realtime_behind)
        assert len(await fair_dispatch.dispatch(redis, keys, lookahead=4)) == 3
        assert await typed(redis.llen(keys.fair_ready("a.myshopify.com"))) == 10 - 1 - 1 - 3
    finally:
        await _cleanup(redis, ids)


async def test_a_late_webhook_job_marks_the_pool_behind_once_in_a_while(
    redis: aioredis.Redis, keys: Keys
) -> None:
    lag = RealtimeLag(redis, keys)
    now = time.time()
    assert not await lag.started(now - 0.5, 1, now)  # on time
    assert not await lag.started(now - 60, 2, now)  # a retry waited for its backoff, not a backlog
    assert not await redis.exists(keys.realtime_behind)
    assert await lag.started(now - 2, 1, now)
    assert 0 < await redis.pttl(keys.realtime_behind) <= realtime_lag.MARK_TTL_MS
    assert not await lag.started(now - 2, 1, now + 0.1)  # written once per MARK_EVERY_S
    assert await lag.started(now - 2, 1, now + realtime_lag.MARK_EVERY_S)


async def test_full_sync_customers_make_way_one_at_a_time_while_webhooks_start_late(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime_lag, "CUSTOMER_PAUSE_S", 0.05)
    lag = RealtimeLag(redis, keys)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def counted_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(seconds)

    monkeypatch.setattr(asyncio, "sleep", counted_sleep)
    await asyncio.gather(*(lag.make_way() for _ in range(4)))
    assert slept == []  # on time: no brake
    await lag.started(time.time() - 2, 1)
    assert lag.behind()
    started = time.monotonic()
    await asyncio.gather(*(lag.make_way() for _ in range(4)))
    assert slept == [0.05] * 4 and time.monotonic() - started >= 4 * 0.05  # one after the other
    assert not lag.behind(time.time() + realtime_lag.MARK_TTL_MS / 1000)  # it lapses


async def test_full_sync_customers_start_spaced_while_webhooks_are_served(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime_lag, "START_GAP_S", 0.1)
    lag = RealtimeLag(redis, keys)
    started = time.monotonic()
    assert await asyncio.gather(*(lag.make_way() for _ in range(4))) == [False] * 4
    assert time.monotonic() - started < 0.2  # no webhooks here: all at once
    await lag.started(time.time(), 1)  # a webhook job started on time: serving, not behind
    assert lag.serving() and not lag.behind()
    started = time.monotonic()
    assert await asyncio.gather(*(lag.make_way() for _ in range(4))) == [False] * 4
    assert time.monotonic() - started >= 3 * 0.1 - 0.01  # the first at once, then one a gap
    assert not lag.serving(time.time() + realtime_lag.SERVING_S)  # it lapses


async def test_an_import_walk_rests_for_its_share_while_webhooks_are_served(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(realtime_lag, "WALK_SHARE", 0.25)
    lag = RealtimeLag(redis, keys)
    assert await lag.give_way(0.1) == 0.0  # no webhooks here: the walk runs flat out
    await lag.started(time.time(), 1)  # a webhook job on time: serving
    assert await lag.give_way(0.1) == pytest.approx(0.3)  # busy a quarter of the time
    assert await lag.give_way(10.0) == realtime_lag.WALK_REST_MAX_S  # a rest is bounded
    await lag.started(time.time() - 5, 1)  # one started late: behind
    assert await lag.give_way(0.01) == realtime_lag.CUSTOMER_PAUSE_S
    assert await lag.give_way(0.2) == pytest.approx(0.6)
    assert slept == [0.3, realtime_lag.WALK_REST_MAX_S, realtime_lag.CUSTOMER_PAUSE_S, 0.6]
