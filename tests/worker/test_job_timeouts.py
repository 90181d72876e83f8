"""How long a killed worker's jobs wait, and that every wait inside a job ends before its budget.

arq re-runs a job whose worker died only once the job's in-progress mark expires (the worker's
longest function timeout + 10 s), and its own timeout fails a job for good. So: arq's limit is
the job's budget plus bookkeeping, every budget inside is shorter, and long waits give up in time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from itertools import pairwise
from typing import Any

import orjson
import pytest
from arq import Retry
from arq.connections import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix

from core.jobs import Delivery, deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings
from core.settings import Settings
from mappings.installation import Installations
from tests.conftest import purge
from worker import budget, coalesce, customer_store, fullsync, sync
from worker.context import WorkerContext
from worker.errors import LimiterTimeoutError, TransientApiError
from worker.jobs import REALTIME_TIMEOUT_S
from worker.main import BOOKKEEPING_S, REALTIME_JOB_TIMEOUT_S, build_worker
from worker.ratelimit import Bucket, RateLimiter, WaitTooLongError, permit
from worker.retry import RetryPolicy, call_with_retries
from worker.runtime import run_job

SHOP = "demo-store.myshopify.com"
# What worker-kill needs: a killed worker's real-time jobs run again well within a minute.
REALTIME_RECOVERY_BOUND_S = 45


@pytest.fixture
async def app(redis_url: str, keys: Keys, demo_installations: Installations) -> AsyncIterator[WorkerContext]:
    pool = await create_pool(arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    context = WorkerContext(settings=settings, installations=demo_installations, redis=pool, keys=keys)
    yield context
    await purge(pool, keys)
    await pool.aclose()


def _timeouts(worker: Any) -> dict[str, float]:
    return {name: f.timeout_s or worker.job_timeout_s for name, f in worker.functions.items()}


async def test_realtime_jobs_of_a_killed_worker_wait_at_most_the_bound(app: WorkerContext) -> None:
    worker = build_worker("realtime", app)
    assert worker.job_timeout_s == REALTIME_JOB_TIMEOUT_S == REALTIME_TIMEOUT_S + BOOKKEEPING_S
    # No function (the crons included) stretches the in-progress mark past the job timeout.
    assert max(_timeouts(worker).values()) == worker.job_timeout_s
    assert worker.in_progress_timeout_s == worker.job_timeout_s + 10 <= REALTIME_RECOVERY_BOUND_S
    # The budgets inside a job end before run_job's timeout, which ends before arq's.
    assert sync.DRIVE_BUDGET_S + budget.RESERVE_S < REALTIME_TIMEOUT_S
    assert coalesce.APPLY_BUDGET_S + budget.RESERVE_S < REALTIME_TIMEOUT_S
    # The killed worker's customer locks are gone by the time its jobs run again.
    assert worker.in_progress_timeout_s > customer_store.LOCK_TTL_MS / 1000


async def test_fullsync_jobs_of_a_killed_worker_are_revived_by_their_leases(app: WorkerContext) -> None:
    worker = build_worker("fullsync", app)
    assert worker.job_timeout_s == fullsync.JOB_TIMEOUT_S
    assert max(_timeouts(worker).values()) == worker.job_timeout_s
    # arq's limit never cuts a batch or a walk before its own budget (which ends in a Retry).
    assert worker.job_timeout_s > fullsync.BATCH_TIMEOUT_S
    assert worker.job_timeout_s > fullsync.WALK_TIMEOUT_S
    # Recovery does not wait for the in-progress mark: the lease lapses, the watchdog (every
    # 5 s) hands the work to a new job (tests/fullsync/test_resume.py kills a worker for real).
    seconds = sorted(fullsync.WATCHDOG_SECONDS)
    watchdog_gap = max(b - a for a, b in pairwise([*seconds, seconds[0] + 60]))
    assert fullsync.LEASE_TTL_MS / 1000 + watchdog_gap < REALTIME_RECOVERY_BOUND_S
    realtime = build_worker("realtime", app)
    cron_timeouts = [f.timeout_s for name, f in realtime.functions.items() if name.startswith("full_sync_")]
    assert cron_timeouts and all(t is not None and t <= realtime.job_timeout_s for t in cron_timeouts)


async def test_a_running_realtime_job_is_marked_in_progress_for_its_timeout_plus_10_s(
    app: WorkerContext,
) -> None:
    # A customer another worker holds: the job waits for it, running, while its mark is read.
    customer_id = 7000000000001
    await app.redis.set(app.keys.customer_lock(SHOP, customer_id), "another-worker", px=60_000)
    delivery = Delivery(
        topic="customers/update",
        shop=SHOP,
        webhook_id=uuid.uuid4().hex,
        event_id=None,
        triggered_at=None,
        api_version="2024-10",
        received_at=time.time(),
        body=orjson.dumps(
            {"id": customer_id, "email": "a@example.com", "updated_at": "2026-01-01T00:00:00Z"}
        ).decode(),
    )
    pool: ArqRedis = app.redis
    job = await pool.enqueue_job("sync_customer", delivery.to_arg(), _queue_name=app.keys.realtime_queue)
    assert job is not None
    worker = build_worker("realtime", app)
    running = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(30):
            while True:
                if worker.job_tasks:  # started, and waiting for the customer
                    break
                await asyncio.sleep(0.02)
        ttl_ms = await pool.pttl(in_progress_key_prefix + job.job_id)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
    assert worker.job_timeout_s * 1000 < ttl_ms <= (worker.job_timeout_s + 10) * 1000
    assert ttl_ms <= REALTIME_RECOVERY_BOUND_S * 1000


async def test_a_rate_limit_wait_past_the_job_budget_gives_up_at_once(app: WorkerContext) -> None:
    limiter = RateLimiter(app.redis, app.keys)  # waits up to 30 s outside a job
    bucket = Bucket(f"slow-{uuid.uuid4().hex[:6]}", rate_per_s=1 / 20, burst=1)  # next slot in 20 s
    await limiter.acquire_bucket(bucket)
    with budget.deadline(10.0), pytest.raises(WaitTooLongError):
        await limiter.acquire_bucket(bucket)

    async def body(app: WorkerContext) -> None:
        await app.limiter.acquire_bucket(bucket)

    ctx = {"app": app, "job_id": "budget-test", "job_try": 1}
    with pytest.raises(Retry) as raised:
        await run_job(ctx, "budget_test", body, (), queue=app.keys.realtime_queue, timeout_s=10.0)
    assert isinstance(raised.value.__cause__, WaitTooLongError)  # not a TimeoutError mid-request


async def test_a_retry_after_past_the_job_budget_is_not_slept() -> None:
    calls = 0
    slept: list[float] = []

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise TransientApiError("apsis", 503, "busy", "", retry_after=15.0)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(budget_s=60.0)
    with budget.deadline(10.0), pytest.raises(TransientApiError):
        await call_with_retries(call, policy, sleep=sleep)
    assert calls == 1 and slept == []
    with pytest.raises(TransientApiError):  # outside a job, the policy's own budget decides
        await call_with_retries(call, policy, sleep=sleep)
    assert slept and slept[0] >= 15.0


async def test_a_request_queued_behind_busy_permits_gives_up_with_the_job_budget(app: WorkerContext) -> None:
    semaphore = asyncio.Semaphore(1)
    await semaphore.acquire()  # another request holds the process's only permit

    def request() -> AbstractAsyncContextManager[None]:
        return permit(
            app.limiter,
            semaphore,
            api="shopify",
            name="s",
            pool_size=None,
            max_wait_s=None,
            method="GET",
            route="/",
        )

    with budget.deadline(budget.RESERVE_S + 0.05), pytest.raises(LimiterTimeoutError):
        async with request():
            pass
    semaphore.release()
    async with request():
        assert semaphore.locked()
    assert not semaphore.locked()  # no permit leaked
