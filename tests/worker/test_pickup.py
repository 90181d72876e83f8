"""The worker's job pickup (worker/pickup.py) against a real Redis: jobs running here or elsewhere
are not claimed again, new ones are, and two workers on one queue still run each job once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from arq.connections import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.worker import func

from core.jobs import deserialize, serialize
from core.redis_conn import arq_settings
from worker import pickup
from worker.pickup import PickupWorker

RUNS: Counter[str] = Counter()


async def _record(ctx: dict[str, Any], name: str) -> None:
    RUNS[name] += 1
    await asyncio.sleep(0.05)  # long enough that both workers' polls see it running


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    client = await create_pool(
        arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize
    )
    yield client
    await client.aclose()


@pytest.fixture
async def queue(pool: ArqRedis) -> AsyncIterator[str]:
    name = f"test-pickup-{uuid4().hex[:12]}"
    yield name
    for job_id in await pool.zrange(name, 0, -1):
        jid = job_id.decode()
        await pool.delete(job_key_prefix + jid, in_progress_key_prefix + jid, retry_key_prefix + jid)
    await pool.delete(name)


def _worker(pool: ArqRedis, queue: str, burst: bool = False) -> PickupWorker:
    return PickupWorker(
        functions=[func(_record, name="record")],
        queue_name=queue,
        redis_pool=pool,
        burst=burst,
        handle_signals=False,
        poll_delay=0.01,
        max_jobs=10,
        keep_result=0,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )


async def test_running_jobs_are_not_claimed_again(
    pool: ArqRedis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker(pool, queue)
    prefix = uuid4().hex[:8]
    names = ["here", "elsewhere", "new1", "new2", "finished"]
    ids = {name: f"{prefix}-{name}" for name in names}
    for name, job_id in ids.items():
        await pool.enqueue_job("record", name, _job_id=job_id, _queue_name=queue)
    running_here = asyncio.create_task(asyncio.sleep(60))
    finished = asyncio.create_task(asyncio.sleep(0))
    await finished
    worker.tasks[ids["here"]] = running_here
    worker.tasks[ids["finished"]] = finished  # done: its job may be back in the queue
    await pool.set(in_progress_key_prefix + ids["elsewhere"], b"1", px=10_000)
    queued = await pool.zrange(queue, 0, -1)
    try:
        picked = {job_id.decode() for job_id in await worker.claimable(queued)}
        assert picked == {ids["new1"], ids["new2"], ids["finished"]}
        # One id left: no pipeline, arq's own claim checks it.
        assert await worker.claimable([ids["elsewhere"].encode()]) == [ids["elsewhere"].encode()]
        assert await worker.claimable([ids["here"].encode()]) == []
        # Two free slots (and chunks as small as that): asked two at a time until at least two
        # are found free to claim.
        monkeypatch.setattr(pickup, "MIN_CHUNK", 1)
        worker.job_counter = worker.max_jobs - 2
        order = [ids[n].encode() for n in ("elsewhere", "new1", "new2", "finished", "here")]
        assert await worker.claimable(order) == [ids[n].encode() for n in ("new1", "new2", "finished")]
        worker.job_counter = worker.max_jobs - 3
        assert await worker.claimable(order[:4]) == [ids[n].encode() for n in ("new1", "new2", "finished")]
        worker.job_counter = worker.max_jobs
        assert await worker.claimable(order) == []
    finally:
        running_here.cancel()
        await pool.delete(in_progress_key_prefix + ids["elsewhere"])
        worker.tasks.clear()
        await worker.close()


async def test_two_workers_on_one_queue_run_every_job_once(pool: ArqRedis, queue: str) -> None:
    prefix = uuid4().hex[:8]
    names = [f"{prefix}-{n}" for n in range(60)]
    for name in names:
        await pool.enqueue_job("record", name, _queue_name=queue)
    workers = [_worker(pool, queue, burst=True) for _ in range(2)]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.async_run() for w in workers)), timeout=60)
    finally:
        for w in workers:
            await w.close()
    assert {name: RUNS[name] for name in names} == dict.fromkeys(names, 1)
    assert sum(w.jobs_complete for w in workers) == len(names)
    assert all(w.jobs_complete for w in workers), "both workers took part"
    assert await pool.zcard(queue) == 0
