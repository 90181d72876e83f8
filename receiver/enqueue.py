"""Group commit of webhook jobs into Redis.

Every accepted delivery needs: check its dedup key, write the arq job, add it to its queue, set
the dedup key. All deliveries handled in the same event-loop tick form one batch, and a batch
goes to Redis as ONE call of a Lua script (`shopsync.jobs.ENQUEUE_BATCH_LUA`): one round trip and
one command to encode for many deliveries. A few batches may be in flight at once so the loop
keeps parsing requests while Redis works; beyond that, deliveries wait and the next batch grows.
Each request is answered only once its own batch is stored.

Batches are capped at 32 with up to 8 in flight: a smaller script call comes back sooner, so the
loop is rarely left with every open request waiting on Redis and nothing to parse (measured
against 256 x 4 with 128 connections: the receiver's core went from ~85 % to ~95 % busy).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from shopsync.jobs import DEDUP_TTL_S, ENQUEUE_BATCH_LUA, JOB_TTL_MS, Delivery, job_bytes, now_ms
from shopsync.keys import Keys
from shopsync.redis_conn import command


class EnqueueError(Exception):
    """Redis could not take the job; the delivery must not be acknowledged."""


@dataclass(slots=True)
class _Pending:
    dedup_suffix: str
    job_id: str
    job: bytes
    future: asyncio.Future[bool]


class BatchEnqueuer:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, queue: str, max_batch: int = 32, max_in_flight: int = 8
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._queue = queue
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sha = hashlib.sha1(ENQUEUE_BATCH_LUA.encode()).hexdigest()
        # Job ids: a random per-process prefix and a counter, unique across processes and
        # restarts without a getrandom() call per webhook.
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.batched_items = 0

    def enqueue(self, delivery: Delivery, function: str) -> asyncio.Future[bool]:
        """Store the job unless this delivery was seen; the future says True when stored, False
        for a duplicate. A plain function handing back the batch's future: no coroutine of its
        own to create and resume for every webhook."""
        loop = self._loop
        if loop is None:
            # Looked up once: on Python 3.11 every get_running_loop() costs a getpid() syscall.
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append(
            _Pending(
                dedup_suffix=f"{delivery.shop}:{delivery.webhook_id}",
                job_id=f"{self._id_prefix}{next(self._ids):016x}",
                job=job_bytes(function, (delivery.to_arg(),)),
                future=future,
            )
        )
        if not self._scheduled:
            # Run after every request of this tick has been parsed and appended.
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending and len(self._in_flight) < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            task = (self._loop or asyncio.get_running_loop()).create_task(self._flush(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            results = await self._store(batch)
        except (RedisError, OSError) as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(EnqueueError(str(exc) or type(exc).__name__))
            return
        self.batches += 1
        self.batched_items += len(batch)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(bool(result))

    async def _store(self, batch: list[_Pending]) -> list[int]:
        args: list[object] = [self._keys.dedup_prefix, DEDUP_TTL_S, JOB_TTL_MS, now_ms()]
        for item in batch:
            args += (item.dedup_suffix, item.job_id, item.job)
        try:
            result = await command(self._redis)("EVALSHA", self._sha, 1, self._queue, *args)
        except NoScriptError:
            # First use, or Redis restarted and lost its script cache: send the script itself.
            result = await command(self._redis)("EVAL", ENQUEUE_BATCH_LUA, 1, self._queue, *args)
        return [int(x) for x in result]

    async def close(self) -> None:
        while self._in_flight or self._pending:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            else:
                self._dispatch()
