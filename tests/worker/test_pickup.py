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
from arq.utils import timestamp_ms
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


async def test_one_script_claims_what_may_start_and_nothing_else(
    pool: ArqRedis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker(pool, queue)
    prefix = uuid4().hex[:8]
    names = ["here", "elsewhere", "new1", "new2", "finished", "later", "gone"]
    ids = {name: f"{prefix}-{name}" for name in names}
    for name, job_id in ids.items():
        await pool.enqueue_job("record", name, _job_id=job_id, _queue_name=queue)
    running_here = asyncio.create_task(asyncio.sleep(60))
    finished = asyncio.create_task(asyncio.sleep(0))
    await finished
    worker.tasks[ids["here"]] = running_here
    worker.tasks[ids["finished"]] = finished  # done: its job may be back in the queue
    await pool.set(in_progress_key_prefix + ids["elsewhere"], b"1", px=10_000)
    queued = await pool.zrange(queue, 0, -1)  # read by the poll; then two change under it:
    await pool.zadd(queue, {ids["later"]: timestamp_ms() + 60_000})  # re-enqueued with a delay
    await pool.zrem(queue, ids["gone"])  # finished and removed by another process
    calls = 0
    claim_script = worker.pool.register_script(pickup._CLAIM)

    async def counted(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await claim_script(**kwargs)

    monkeypatch.setattr(worker, "_claim_script", counted)
    try:
        claimed = dict(await worker.claim(queued))
        assert set(claimed) == {ids["new1"], ids["new2"], ids["finished"]}
        assert calls == 1  # one round trip for all of them
        for job_id, score in claimed.items():
            assert score == int(await pool.zscore(queue, job_id))  # arq's run_job gets the score
            assert await pool.exists(in_progress_key_prefix + job_id)  # claimed: marked
        for name in ("here", "later", "gone"):
            assert not await pool.exists(in_progress_key_prefix + ids[name])
        assert await worker.claim(queued) == []  # all marked now (here: running here)
        # No more than the free slots, in queue order, asking `MIN_CHUNK` ids at a time.
        await pool.delete(*(in_progress_key_prefix + ids[n] for n in ("new1", "new2", "finished")))
        monkeypatch.setattr(pickup, "MIN_CHUNK", 1)
        calls = 0
        worker.job_counter = worker.max_jobs - 2
        order = [ids[n].encode() for n in ("elsewhere", "new1", "new2", "finished", "here")]
        assert [job_id for job_id, _ in await worker.claim(order)] == [ids["new1"], ids["new2"]]
        assert calls == 2  # chunks of two (the free slots): [elsewhere, new1], [new2, finished]
        assert not await pool.exists(in_progress_key_prefix + ids["finished"])
        worker.job_counter = worker.max_jobs
        assert await worker.claim(order) == []
    finally:
        running_here.cancel()
        await pool.delete(*(in_progress_key_prefix + job_id for job_id in ids.values()))
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
