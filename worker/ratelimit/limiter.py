"""The shared limiter itself (`RateLimiter`): reserve a slot in a bucket and sleep until it
comes (`acquire_bucket`), refusing with `WaitTooLongError` a wait longer than allowed or than
the job's budget left; feed back the APIs' view (`raise_level`, `hold`, `delay`, and following
a delayed schedule after the sleep); cap concurrency per process (`concurrency`) and, with
`lease`, across the pool. See the package docstring for the design."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from core.keys import Keys
from core.settings import env_float
from worker import budget, lanes, metrics
from worker.ratelimit import scripts
from worker.ratelimit.buckets import MICROS, Bucket
from worker.ratelimit.state import BucketState, limiter_state, state_key


class WaitTooLongError(Exception):
    def __init__(self, name: str, wait_s: float, bucket: Bucket | None = None) -> None:
        self.name, self.wait_s, self.bucket = name, wait_s, bucket
        super().__init__(f"rate limit {name}: next slot in {wait_s:.1f} s")


@dataclass(frozen=True, slots=True)
class Stage:
    """One slot a request takes: in `bucket` itself, or (`share_of`, a participant `shop/lane`)
    in that participant's share of the APSIS account `bucket` (`scripts.CHAIN`)."""

    bucket: Bucket
    share_of: str | None = None

    @property
    def name(self) -> str:
        if self.share_of is None:
            return self.bucket.name
        return f"apsis-share:{self.bucket.name.split(':', 1)[1]}:{self.share_of}"


def _stages(buckets: Sequence[Bucket]) -> list[Stage]:
    """Each bucket's stage, an APSIS account's preceded by the running shop's share of it."""
    who = lanes.participant()
    out: list[Stage] = []
    for bucket in buckets:
        if bucket.kind == "apsis" and who is not None:
            out.append(Stage(bucket, who))
        out.append(Stage(bucket))
    return out


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        max_wait_s: float = 30.0,
        jitter_s: float = 0.002,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_wait_s = max_wait_s
        self.jitter_s = jitter_s
        self._chain = redis.register_script(scripts.CHAIN)
        self._raise = redis.register_script(scripts.RAISE)
        self._delay = redis.register_script(scripts.DELAY)
        self._lease = redis.register_script(scripts.LEASE)
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @property
    def registry_key(self) -> str:
        return state_key(self.keys)

    async def acquire(
        self,
        name: str,
        rate_per_s: float,
        burst: float,
        cost: float = 1,
        *,
        max_wait_s: float | None = None,
        kind: str = "",
        listed: bool = True,
    ) -> float:
        """Reserve a slot in bucket `name`, sleep until it comes, return the seconds waited."""
        return await self.acquire_bucket(
            Bucket(name, rate_per_s, burst, kind, listed), cost, max_wait_s=max_wait_s
        )

    async def acquire_bucket(
        self, bucket: Bucket, cost: float = 1, *, max_wait_s: float | None = None
    ) -> float:
        return await self.acquire_all([bucket], cost, max_wait_s=max_wait_s)

    async def acquire_all(
        self, buckets: Sequence[Bucket], cost: float = 1, *, max_wait_s: float | None = None
    ) -> float:
        """A slot in each of `buckets` in turn (inside a shop's job, an APSIS account bucket is
        preceded by the shop's share of it, `scripts.CHAIN`), sleeping for each as it comes;
        return the seconds waited. The slots that are free at once are taken in one round trip.
        `WaitTooLongError` (its `bucket` the one refused) when a wait exceeds the limit."""
        stages = _stages(buckets)
        waited = 0.0
        while stages:
            lanes.check(time.time())  # a shop that backs off sends nothing (worker/shop_backoff.py)
            limit = budget.cap_wait(self.max_wait_s if max_wait_s is None else max_wait_s)
            done, admitted, wait, extra = await self.reserve(stages, cost, limit)
            for stage in stages[: done - 1 if admitted else done]:
                if stage.share_of is None:
                    metrics.limiter_waited(stage.bucket.kind or "other", 0.0)
            if not admitted:
                refused = stages[done]
                raise WaitTooLongError(refused.name, wait, bucket=refused.bucket)
            waited += await self._wait_for(stages[done - 1], wait, extra, limit)
            stages = stages[done:]
        return waited

    async def reserve(
        self, stages: Sequence[Stage], cost: float, limit_s: float
    ) -> tuple[int, bool, float, int]:
        """One `scripts.CHAIN` call, no sleeping: how many stages it reserved, whether the last
        one tried was admitted, that stage's wait (seconds) and its extra (shift or cap)."""
        keys: list[str] = []
        args: list[str | int] = [len(stages)]
        for stage in stages:
            bucket = stage.bucket
            if stage.share_of is None:
                keys += [self.keys.limiter(bucket.name), self._shift_key(bucket), self.registry_key]
                args += ["g", bucket.interval_us, _num(bucket.burst), _num(cost)]
                args += [round(limit_s * MICROS), bucket.name, int(bucket.listed), ""]
            else:
                client = bucket.name.split(":", 1)[1]
                keys += [
                    self.keys.limiter(stage.name),
                    self.keys.limiter(f"apsis-share-use:{client}"),
                    self.registry_key,
                ]
                args += ["s", _num(bucket.rate_per_s), stage.share_of, _num(SHARE_BURST), _num(cost)]
                args += [round(limit_s * MICROS), _num(BULK_HEADROOM), stage.name]
        done, admitted, wait_us, extra = await self._chain(keys=keys, args=args)
        return int(done), bool(admitted), int(wait_us) / MICROS, int(extra)

    async def _wait_for(self, stage: Stage, wait: float, extra: int, limit_s: float) -> float:
        """Sleep until the slot of `stage`, reserved with `wait`, comes; the seconds waited."""
        if stage.share_of is not None:
            if wait > 0:
                await asyncio.sleep(wait + random.uniform(0, self.jitter_s))
                metrics.limiter_waited("apsis-share", wait)
            return wait
        if wait > 0:
            # The jitter only ever delays: it spreads processes woken for adjacent slots.
            wait += random.uniform(0, self.jitter_s)
            await asyncio.sleep(wait)
            if stage.bucket.shiftable:
                wait += await self._follow_shift(stage.bucket, extra, limit_s)
        metrics.limiter_waited(stage.bucket.kind or "other", wait)
        return wait

    async def _follow_shift(self, bucket: Bucket, seen_us: int, limit_s: float) -> float:
        """Sleep as far as the schedule was delayed while we slept (a bounded number of times)."""
        extra = 0.0
        for _ in range(8):
            current = int(await self.redis.get(self._shift_key(bucket)) or 0)
            if current <= seen_us or extra >= limit_s:
                break
            step = (current - seen_us) / MICROS
            seen_us = current
            extra += step
            await asyncio.sleep(step)
        return extra

    async def delay(self, bucket: Bucket, seconds: float, guard_s: float = 0.0) -> bool:
        """Nobody sends for `seconds`: the bucket's whole schedule moves that much later,
        reservations already handed out too (for `shiftable` buckets). Ignored while an earlier delay and its guard are running, so
        a burst of answers reporting the same congestion delays once. True when applied."""
        if seconds <= 0:
            return False
        applied = await self._delay(
            keys=[
                self.keys.limiter(bucket.name),
                self._shift_key(bucket),
                self.keys.limiter(f"{bucket.name}:guard"),
            ],
            args=[
                round(seconds * MICROS),
                round(guard_s * MICROS),
                round(max(0.0, bucket.burst - 1) * bucket.interval_us),
            ],
        )
        return bool(applied)

    def _shift_key(self, bucket: Bucket) -> str:
        return self.keys.limiter(f"{bucket.name}:shift")

    async def raise_level(self, bucket: Bucket, level: float) -> bool:
        """Make the bucket at least `level` full (the API says it is fuller than we think)."""
        if level <= 0:
            return False
        moved = await self._raise(
            keys=[self.keys.limiter(bucket.name)], args=[round(level * bucket.interval_us)]
        )
        return bool(moved)

    async def hold(self, bucket: Bucket, seconds: float) -> bool:
        """Nobody gets a slot in this bucket for `seconds` (a 429 with Retry-After)."""
        # The next acquire waits TAT + interval - burst*interval - now; solve for `seconds`.
        level = max(0.0, bucket.burst - 1) + seconds * bucket.rate_per_s
        return await self.raise_level(bucket, level)

    def concurrency(self, name: str, size: int) -> asyncio.Semaphore:
        """This process's semaphore for `name` (created on first use with `size` permits): a
        `LaneSemaphore`, so full-sync requests never hold the permits real-time ones wait for."""
        semaphore = self._semaphores.get(name)
        if semaphore is None:
            semaphore = self._semaphores[name] = LaneSemaphore(size)
        return semaphore

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, size: int, *, ttl_s: float = 120.0, max_wait_s: float | None = None
    ) -> AsyncIterator[None]:
        """Hold one of `size` permits shared by the whole pool (optional, on top of the
        per-process semaphore). Leases of a crashed process expire after `ttl_s`, which must
        exceed the longest request. Waiting polls with a growing pause: not FIFO across
        processes, so keep it a cap that is rarely reached, not a queue."""
        key = self.keys.limiter(f"{name}:leases")
        lease_id = uuid.uuid4().hex
        limit = budget.cap_wait(self.max_wait_s if max_wait_s is None else max_wait_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        pause = 0.005
        while not await self._lease(keys=[key], args=[max(1, size), round(ttl_s * MICROS), lease_id]):
            if loop.time() + pause > deadline:
                raise WaitTooLongError(f"{name}:leases", pause)
            await asyncio.sleep(pause * (1 + random.random()))
            pause = min(0.2, pause * 2)
        try:
            yield
        finally:
            await self.redis.zrem(key, lease_id)

    async def state(self) -> list[BucketState]:
        """Every listed bucket's level right now (for `shopsync status` and `/admin/status`)."""
        return await limiter_state(self.redis, self.keys)


# A participant's share bucket admits this many requests at once before pacing.
SHARE_BURST = 2.0
# The part of an APSIS account's rate a full sync leaves free while real-time work is active on it.
BULK_HEADROOM = env_float("SHOPSYNC_BULK_HEADROOM", 0.1, minimum=0)


class LaneSemaphore(asyncio.Semaphore):
    """Two semaphores behind one: `size` permits for the real-time lane, three quarters of that
    for the bulk lane (`worker.lanes.LANE` of the task that acquires and releases). Full-sync
    batches run many requests at once; with one semaphore they took every permit and real-time
    requests queued behind them in this process."""

    def __init__(self, size: int) -> None:
        super().__init__(max(1, size))
        self.size = max(1, size)
        self._bulk = asyncio.Semaphore(max(1, size * 3 // 4))

    async def acquire(self) -> Literal[True]:
        if lanes.LANE.get() == "bulk":
            return await self._bulk.acquire()
        return await super().acquire()

    def release(self) -> None:
        if lanes.LANE.get() == "bulk":
            self._bulk.release()
        else:
            super().release()

    def locked(self) -> bool:
        return self._bulk.locked() if lanes.LANE.get() == "bulk" else super().locked()


def _num(value: float) -> str:
    """Exact text for Lua's tonumber (no float repr surprises like 1e-05)."""
    return format(value, ".6f") if not float(value).is_integer() else str(int(value))
