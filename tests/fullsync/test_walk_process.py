"""An import walk's slice in a child process at a lower CPU priority (worker/fullsync/walk_process.py).

Real parts: the sandboxes in the test process, real Redis, and the child a real interpreter that
reads the installations file and Redis as its worker would. The walk itself is tested inline by
the other import-path tests; here: that a worker in `child` mode hands the slice to a niced child,
that the child's result and errors come back as the job's, and that a cancelled job stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from core import fullsync_control as control
from core.fullsync_control import SyncKeys
from core.keys import Keys
from core.settings import Settings
from sandbox.apsis.imports import imports_of
from sandbox.installation import installation_document, write_installation
from tests.e2e.harness import Pipeline, pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, walk_children, worker_process
from tests.fullsync.test_fullsync import store_ids
from worker.context import WorkerContext
from worker.fullsync import lease as lease_module
from worker.fullsync import walk_process, watchdog
from worker.runtime import TransientError

ROOT = Path(__file__).resolve().parents[2]
SIZE = 300


@pytest.mark.parametrize(
    ("code", "out", "expected"),
    [
        (0, b'{"pages": 2, "walk_done": true}', {"pages": 2, "walk_done": True}),
        (walk_process.TEMPFAIL, b'{"error": "ConnectionError: refused"}', TransientError),
        (-9, b"", TransientError),  # killed by a signal (the OOM killer)
        (1, b'{"error": "KeyError: x"}', RuntimeError),
        (1, b"Traceback (most recent", RuntimeError),  # died before writing its result
    ],
)
def test_the_childs_exit_becomes_the_jobs_result_or_error(code: int, out: bytes, expected: Any) -> None:
    if isinstance(expected, dict):
        assert walk_process._outcome(code, out) == expected
    else:
        with pytest.raises(expected):
            walk_process._outcome(code, out)


def test_an_unknown_walk_mode_stops_the_worker_with_one_line() -> None:
    with pytest.raises(ValueError, match="SHOPSYNC_WALK_PROCESS must be one of child, inline"):
        walk_process.mode_from_env({"SHOPSYNC_WALK_PROCESS": "thread"})
    assert walk_process.mode_from_env({}) == "child"
    done = subprocess.run(
        [sys.executable, "-m", "shopsync.cli", "worker"],
        env={**os.environ, "SHOPSYNC_WALK_PROCESS": "thread"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "shopsync worker: SHOPSYNC_WALK_PROCESS must be one of child, inline, not 'thread'"
    ]


def test_a_child_is_lowered_from_the_worker_before_it_has_imported_anything() -> None:
    # The worker lowers the child at once, not the child after its imports (about 1 s of CPU).
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        walk_process._lower_priority(child.pid)
        assert psutil.Process(child.pid).nice() == walk_process.WALK_NICE
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
    finally:
        child.kill()
        child.wait()
    walk_process._lower_priority(child.pid)  # gone already: nothing to lower, no error


@pytest.mark.parametrize(
    ("ran_s", "waited_s", "expected"),
    [
        (0.0, 0.9, True),  # runnable all the window and never ran: no idle CPU left
        (0.04, 0.6, True),
        (0.06, 0.9, False),  # it had its floor
        (0.0, 0.1, False),  # asleep (waiting on APSIS, on Redis): not starved
        (0.5, 0.5, False),
    ],
)
def test_a_child_is_starved_when_it_waited_to_run_and_hardly_ran(
    ran_s: float, waited_s: float, expected: bool
) -> None:
    assert walk_process.starved(ran_s, waited_s, 1.0) is expected


def _spinners(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


async def test_a_starved_idle_child_runs_as_a_normal_task_for_a_window_then_idles_again() -> None:
    # Both cores taken by normal tasks: the SCHED_IDLE child gets no CPU until the floor lifts it.
    child, *hogs = _spinners(1 + (os.cpu_count() or 2))
    lifts: list[int] = []
    seen: set[int] = set()
    walk_process._lower_priority(child.pid)
    floor = asyncio.create_task(walk_process.keep_floor(child.pid, lambda: lifts.append(1), window_s=0.3))
    try:
        async with asyncio.timeout(20):
            while (
                os.SCHED_OTHER not in seen
                or len(seen) < 2
                or os.sched_getscheduler(child.pid) != os.SCHED_IDLE
            ):
                seen.add(os.sched_getscheduler(child.pid))
                await asyncio.sleep(0.02)
        assert psutil.Process(child.pid).nice() == walk_process.WALK_NICE  # its nice level kept
        assert lifts
    finally:
        floor.cancel()
        for proc in (child, *hogs):
            proc.kill()
            proc.wait()


def _child_mode(p: Pipeline, redis_url: str, keys: Keys, tmp_path: Path) -> WorkerContext:
    """A worker's context as `shopsync worker` builds it: settings naming the installations file."""
    shops = write_installation(
        tmp_path / "shops.toml",
        installation_document(p.shopify.url, p.apsis.url, p.shop.api_version, limits=FAST_LIMITS, sync=SYNC),
    )
    settings = Settings(
        redis_url=redis_url, key_prefix=keys.prefix, shops_file=str(shops), log_level="warning"
    )
    return WorkerContext(
        settings=settings, installations=p.installations, redis=p.pool, keys=keys, walk_process="child"
    )


async def test_an_import_slice_runs_in_a_niced_child_and_its_result_comes_back(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        imports_of(p.account).settings.rows_per_second = 100_000.0
        app = _child_mode(p, redis_url, keys, tmp_path)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        result = await walk_process._slice(app, started.sync_id, 0)
        record = await control.read_sync(p.redis, keys, started.sync_id)
        assert record is not None
        # The child read the whole store through imports, under the walk's lease, and let it go.
        assert record["path"] == "import" and record["walked"] == SIZE, record
        assert result["pages"] >= 1 and result["walk_process"]["nice"] == walk_process.WALK_NICE, result
        assert result["walk_process"]["pid"] != os.getpid()
        assert not psutil.pid_exists(result["walk_process"]["pid"])
        assert await p.redis.get(SyncKeys(keys, started.sync_id).lease("walk")) is None
        # The child's counters reach the shared metrics (its flush on the way out), beside the job's.
        await app.metrics.flush()
        metrics = await p.redis.hgetall(keys.metrics)  # type: ignore[misc]
        assert any(
            b"import" in name for name in metrics if name.startswith(b"shopsync_api_requests_total")
        ), sorted(metrics)
        assert metrics[b"shopsync_fullsync_walk_processes_total"] == b"1"


async def test_the_worker_holds_the_walks_lease_while_its_child_cannot_run(
    redis_url: str, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child with no CPU (here: stopped) renews nothing itself; its worker renews the lease it
    # took for it, so the watchdog sees a live walk and starts no second child beside it.
    monkeypatch.setattr(lease_module, "LEASE_TTL_MS", 1_000)
    monkeypatch.setattr(lease_module, "LEASE_RENEW_S", 0.2)
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        imports_of(p.account).settings.rows_per_second = 100_000.0
        app = _child_mode(p, redis_url, keys, tmp_path)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        lease = SyncKeys(keys, started.sync_id).lease("walk")
        job = asyncio.create_task(walk_process._slice(app, started.sync_id, 0))
        async with asyncio.timeout(60):
            while not psutil.Process().children():  # noqa: ASYNC110 - the worker spawns it
                await asyncio.sleep(0.01)
        child = psutil.Process().children()[0]
        child.suspend()
        assert await p.redis.get(lease)  # taken by the worker before the child ran a line
        await asyncio.sleep(2.5)  # more than two TTLs
        assert await p.redis.get(lease), "the lease lapsed while the child could not run"
        assert await watchdog.supervise(app, started.sync_id, grace_s=0) == 0
        child.resume()
        async with asyncio.timeout(120):
            result = await job
        record = await control.read_sync(p.redis, keys, started.sync_id)
        assert record is not None and record["walked"] == SIZE and result["pages"] >= 1, (record, result)
        assert await p.redis.get(lease) is None  # released when the child ended


async def test_a_superseded_slice_ends_in_the_jobs_process_without_taking_the_lease(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=50, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        app = _child_mode(p, redis_url, keys, tmp_path)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        result = await walk_process._slice(app, started.sync_id, 7)  # the walk is at gen 0
        assert result == {"skipped": "superseded"}
        await app.metrics.flush()
        assert not await p.redis.hexists(keys.metrics, "shopsync_fullsync_walk_processes_total")  # type: ignore[misc]
        assert await p.redis.get(SyncKeys(keys, started.sync_id).lease("walk")) is None


async def test_a_per_profile_slice_stays_in_the_jobs_process(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=50, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        app = _child_mode(p, redis_url, keys, tmp_path)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain, kind="reconcile")
        result = await walk_process._slice(app, started.sync_id, 0)
        assert "walk_process" not in result, result
        await app.metrics.flush()
        assert not await p.redis.hexists(keys.metrics, "shopsync_fullsync_walk_processes_total")  # type: ignore[misc]


async def test_a_cancelled_walk_job_stops_its_child_which_lets_the_lease_go(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        imports_of(p.account).settings.rows_per_second = 1.0  # the slice waits on APSIS's processing
        app = _child_mode(p, redis_url, keys, tmp_path)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        lease = SyncKeys(keys, started.sync_id).lease("walk")
        job = asyncio.create_task(walk_process._slice(app, started.sync_id, 0))
        async with asyncio.timeout(60):
            while not await p.redis.get(lease):  # noqa: ASYNC110 - the child writes it
                await asyncio.sleep(0.05)
        children = psutil.Process().children()
        assert len(children) == 1 and children[0].nice() == walk_process.WALK_NICE
        assert os.sched_getscheduler(children[0].pid) == os.SCHED_IDLE
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        # SIGTERM: the child ended its slice and released the lease itself (no 10 s lapse).
        assert not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE
        assert await p.redis.get(lease) is None
        record = await control.read_sync(p.redis, keys, started.sync_id)
        assert record is not None and record["state"] == "running"


@pytest.mark.parametrize("to", ["worker", "group"])
async def test_a_worker_stopped_mid_walk_stops_its_child_and_the_next_worker_finishes_the_sync(
    redis_url: str, keys: Keys, tmp_path: Path, to: str
) -> None:
    """SIGTERM to the worker alone (`worker`, as `docker stop` sends it): after its grace the walk
    job is cancelled, the child gets SIGTERM and lets the lease go. SIGTERM to every process
    (`group`, as Heroku stops a dyno): the child stops its slice at once, the job ends in a retry.
    Either way the worker exits 0 and a new one finishes the sync with nothing lost and no import
    requested twice."""
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        service = imports_of(p.account)
        service.settings.rows_per_second = 100.0  # the slice is driving files when it is stopped
        app = _child_mode(p, redis_url, keys, tmp_path)
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPSYNC_KEY_PREFIX": keys.prefix,
            "SHOPS_FILE": app.settings.shops_file,
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "SHOPSYNC_SHUTDOWN_GRACE_S": "1",
        }
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        lease = SyncKeys(keys, started.sync_id).lease("walk")
        worker = worker_process(env)
        try:
            async with asyncio.timeout(60):
                while not (walk_children(started.sync_id) and service.counters["uploaded"] >= 1):  # noqa: ASYNC110 - other processes
                    await asyncio.sleep(0.05)
            child = walk_children(started.sync_id)[0]
            assert child.ppid() == worker.pid
            if to == "group":
                os.killpg(worker.pid, signal.SIGTERM)
            else:
                worker.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert not walk_children(started.sync_id)
        assert await p.redis.get(lease) is None  # released by the child, not left to lapse
        service.settings.rows_per_second = 100_000.0
        worker = worker_process(env)
        try:
            record = await wait_finished(p.redis, keys, started.sync_id, limit_s=120)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert record["state"] == "finished" and record["walked"] == SIZE and record["failed"] == 0, record
        files = record["import_files"]
        assert service.counters["requested"] == files["built"] == files["completed"], service.counters
        assert p.mismatches(store_ids(SIZE)) == []
