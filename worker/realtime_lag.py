"""Telling the pool that webhook jobs start late, so full-sync batches make way (fair_dispatch).

Two brakes and a spacing, because a full sync's batch and the webhooks share each worker
process's CPU:
- in the process, always while it serves webhooks: full-sync customers start `START_GAP_S`
  apart (`make_way`), so batches starting together do not put their customers' CPU in one burst;
- in the process: a full-sync customer applied while the process's own webhook jobs started late
  in the last `MARK_TTL_MS` waits its turn at a gate, one customer at a time, `CUSTOMER_PAUSE_S`
  apart (`make_way`). One batch runs its customers concurrently: without this, a single batch of
  an APSIS-bound sync kept it at full speed beside a growing webhook backlog (measured, 20 shops
  at 20 webhooks/s, `make bench BENCH_ARGS=fairness`);
- in the process: an import walk (a full sync through APSIS imports, routing thousands of
  customers a second into CSV rows, worker/fullsync/imports.py) rests after each page for as long
  as `WALK_SHARE` asks while the process serves webhooks, longer while they start late
  (`give_way`), and lets the event loop run between slices of `WALK_SLICE` customers. Beside it,
  the other shops' p99 went from 44 to 295 ms (the fairness benchmark, `BENCH_FAIRNESS_PATH=import`);
- across the pool: a webhook job whose first run starts more than `BEHIND_S` after it was due
  on the queue (the receiver's enqueue; a parked job's release) sets `Keys.realtime_behind`
  for `MARK_TTL_MS`. While the mark is there the fair dispatcher lets one full-sync batch at a
  time through, one every `fair_dispatch.BEHIND_EVERY_S`. Once webhook jobs start on time
  again, nobody renews it and it lapses. A process writes the mark at most once every
  `MARK_EVERY_S`: one command when the pool is already overloaded, none otherwise. A failed
  write is logged and ignored: the mark only steers, it carries no work.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import Keys
from core.settings import env_float

log = structlog.get_logger("worker.realtime_lag")

# A delivery that waited longer than this in the queue means the pool is behind: real-time jobs
# otherwise start within tens of milliseconds (the latency goal is p99 <= 500 ms). worker/coalesce.py
# defers applies past it too.
BEHIND_S = 1.0
MARK_TTL_MS = 3000
MARK_EVERY_S = 0.5
# While behind: at most one full-sync customer per this long per process (4/s, two processes 8/s).
CUSTOMER_PAUSE_S = 0.25
# While a process serves webhooks (started one within SERVING_S), full-sync customers start at
# most one per START_GAP_S in it (0: no spacing). The batches of a sync end together (they run
# side by side at the pace of one APSIS account) and the next ones start together, 16 customers
# each at once: their CPU before the first APSIS request (decode, plan, the store's scripts)
# came in one burst ahead of the webhooks in the event loop, and the others' p99 in those seconds
# rose to 100-240 ms (the fairness benchmark, docs/PERFORMANCE-LOG.md "Many shops"). Spaced, a
# process still starts up to 100 a second, several times what one account lets a sync write.
START_GAP_S = env_float("SHOPSYNC_FULLSYNC_START_GAP_S", 0.01, minimum=0)
SERVING_S = 2.0
# While a process serves webhooks, an import walk's pages take at most this share of its time
# (the rest it sleeps). Alone it reads ~3,200 customers/s in one process; at 0.5 that is still more
# than APSIS's import processing takes at the rate assumed in docs/PERFORMANCE.md (~1,480 a second).
WALK_SHARE = env_float("SHOPSYNC_IMPORT_WALK_SHARE", 0.5)
WALK_SLICE = 50  # customers routed between two turns of the event loop while serving webhooks
WALK_REST_MAX_S = 2.0


class RealtimeLag:
    """One per worker process: marks the pool behind when a webhook job starts late."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.marked_at = 0.0
        self.late_at = 0.0  # the last start of a late webhook job in this process
        self.served_at = 0.0  # the last start of any webhook job in this process
        self.next_start = 0.0  # monotonic: the earliest a full-sync customer may start
        self._gate = asyncio.Lock()

    def behind(self, now: float | None = None) -> bool:
        """This process started a late webhook job within the last `MARK_TTL_MS`."""
        return (time.time() if now is None else now) - self.late_at < MARK_TTL_MS / 1000

    def serving(self, now: float | None = None) -> bool:
        """This process started a webhook job within the last `SERVING_S`."""
        return (time.time() if now is None else now) - self.served_at < SERVING_S

    async def make_way(self) -> bool:
        """Before a full-sync customer: while `behind`, one at a time, `CUSTOMER_PAUSE_S` apart
        (True); while serving webhooks, `START_GAP_S` after the customer started before it."""
        if self.behind():
            async with self._gate:
                if self.behind():
                    await asyncio.sleep(CUSTOMER_PAUSE_S)
                    return True
            return False
        if START_GAP_S > 0 and self.serving():
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + START_GAP_S  # reserved before waiting: no lock needed
            if start > now:
                await asyncio.sleep(start - now)
        return False

    async def give_way(self, busy_s: float) -> float:
        """After an import walk's page kept this process busy `busy_s`: while webhook jobs start
        late, rest three times as long (at least `CUSTOMER_PAUSE_S`); while the process serves
        webhooks, as long as keeps the walk to `WALK_SHARE` of its time. The seconds rested."""
        if self.behind():
            rest = max(CUSTOMER_PAUSE_S, 3 * busy_s)
        elif self.serving() and 0 < WALK_SHARE < 1:
            rest = busy_s * (1 - WALK_SHARE) / WALK_SHARE
        else:
            return 0.0
        rest = min(rest, WALK_REST_MAX_S)
        await asyncio.sleep(rest)
        return rest

    async def started(self, due_at: float, job_try: int, now: float | None = None) -> bool:
        """A webhook job's first run started, due since `due_at`; True when it was late and the
        mark was written."""
        now = time.time() if now is None else now
        self.served_at = now
        if job_try != 1 or now - due_at <= BEHIND_S:
            return False
        self.late_at = now
        if now - self.marked_at < MARK_EVERY_S:
            return False
        self.marked_at = now
        try:
            await self.redis.set(self.keys.realtime_behind, "1", px=MARK_TTL_MS)
        except (RedisError, OSError) as exc:
            log.warning("realtime_behind_mark_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True
