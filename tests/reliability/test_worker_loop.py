"""`worker.main.keep_running`: arq's poll loop comes back after a Redis error (found by the
redis-restart and redis-down scenarios: the loop ended and the process kept running without
reading its queue, or exited)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.main import keep_running


class FakePool:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, *keys: str) -> int:
        self.deleted += keys
        return len(keys)


class FakeWorker:
    """What keep_running touches of an arq Worker."""

    queue_name = "q"
    max_jobs = 3

    def __init__(self, failures: int) -> None:
        self.pool = FakePool()
        self.failures = failures
        self.runs = 0
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.job_counter = 3
        self.sem = asyncio.BoundedSemaphore(4)

    async def async_run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            failed: asyncio.Task[None] = asyncio.create_task(self._fail())
            await asyncio.sleep(0)
            self.tasks[f"job{self.runs}"] = failed
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def _fail(self) -> None:
        raise RedisConnectionError("lost")


async def test_the_loop_runs_again_after_redis_errors_and_recounts_job_slots() -> None:
    worker = FakeWorker(failures=2)
    await keep_running(worker, pause_s=0.0)  # type: ignore[arg-type]
    assert worker.runs == 3
    assert worker.tasks == {}
    assert worker.job_counter == 0
    assert worker.sem._value == 4
    # The jobs whose bookkeeping failed are runnable again at once, not after their marks expire.
    assert sorted(worker.pool.deleted) == ["arq:in-progress:job1", "arq:in-progress:job2"]


async def test_a_cancellation_still_stops_it() -> None:
    class Cancelled(FakeWorker):
        async def async_run(self) -> None:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await keep_running(Cancelled(failures=0), pause_s=0.0)  # type: ignore[arg-type]


async def test_the_job_whose_error_ended_the_loop_is_released_too() -> None:
    # arq's poll loop drops a finished task from `tasks`, then re-raises its error: that job's
    # id is gone from `tasks` when the loop ends (found by redis-restart: it waited 130 s).
    class ArqLike(FakeWorker):
        async def async_run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                failed: asyncio.Task[None] = asyncio.create_task(self._fail())
                self.tasks["job1"] = failed
                await asyncio.sleep(0)
                for job_id, task in list(self.tasks.items()):
                    if task.done():
                        del self.tasks[job_id]
                        task.result()

    worker = ArqLike(failures=0)
    await keep_running(worker, pause_s=0.0)  # type: ignore[arg-type]
    assert worker.runs == 2
    assert worker.pool.deleted == ["arq:in-progress:job1"]
