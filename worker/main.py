"""`shopsync worker`: one process running arq workers for the real-time and full-sync queues.

Both queues share one Redis pool and one `WorkerContext` (clients, limiter, metrics). Signals are
handled here rather than by each arq Worker (the second would replace the first's handlers): on
SIGTERM/SIGINT every worker stops picking jobs, running jobs get `SHUTDOWN_GRACE_S` to finish
(Heroku allows 30 s), and whatever is still running is cancelled, which arq re-queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import structlog
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

from core.config import ConfigFileError, read_config_file
from core.eventloop import use_uvloop
from core.jobs import deserialize, serialize
from core.keys import Keys
from core.redis_conn import job_pool, redis_failure
from core.reload import FileWatcher
from core.settings import Settings, default_shops_file_warning, env_int
from core.shopify_auth.cipher import TokenKeyError
from mappings.installation import InstallationError, Installations
from mappings.installation_parse import parse_installations_toml
from worker import audit_schedule, fullsync
from worker.coalesce import APPLY_MAX_JOBS
from worker.context import WorkerContext
from worker.fullsync import walk_process
from worker.jobs import (
    REALTIME_TIMEOUT_S,
    apply_functions,
    fullsync_functions,
    realtime_cron_jobs,
    realtime_functions,
)
from worker.pickup import PickupWorker
from worker.runtime import ARQ_MAX_TRIES

# Heroku kills 30 s after SIGTERM; elsewhere (or in tests) SHOPSYNC_SHUTDOWN_GRACE_S changes it.
SHUTDOWN_GRACE_S = env_int("SHOPSYNC_SHUTDOWN_GRACE_S", 20, minimum=0)
# ...then cancelled jobs get this long to end (20 + 6 stays under Heroku's 30 s).
WIND_DOWN_S = walk_process.STOP_GRACE_S + 1
HEALTH_CHECK_S = 30
RESTART_PAUSE_S = 1.0
# arq's own job timeout fails a job for good (no Retry, no dead letter: the webhook is lost), so it
# must never be what ends one: each job's budget is `run_job`'s timeout, which ends in a Retry,
# and arq's limit is that plus time for run_job's bookkeeping after it (a few Redis calls).
# arq's limit also sets how long a SIGKILLed worker's jobs wait before another worker re-runs
# them: their in-progress marks live the worker's longest function timeout + 10 s. Real-time:
# 30 s of work (worker/jobs.py) + 5 s = 35 s, so a killed worker's webhooks run again within
# 45 s. Full sync: a killed worker's walk or batch is handed to a new job by the watchdog once
# its lease lapses (seconds, worker/fullsync/); the mark only holds back the superseded job.
BOOKKEEPING_S = 5
REALTIME_JOB_TIMEOUT_S = REALTIME_TIMEOUT_S + BOOKKEEPING_S
FULLSYNC_JOB_TIMEOUT_S = fullsync.JOB_TIMEOUT_S
# Full-sync job slots per process (walks and batches; batches are handed out to them fairly
# across shops by worker/fair_dispatch.py). Real-time and apply jobs have slots of their own.
FULLSYNC_MAX_JOBS = env_int("SHOPSYNC_FULLSYNC_MAX_JOBS", 8, minimum=1)
log = structlog.get_logger("worker")


def run(settings: Settings, queue: str = "all", burst: bool = False) -> int:
    try:
        path = settings.shops_file
        installations = parse_installations_toml(read_config_file(path), os.environ, source=path)
        walk_mode = walk_process.mode_from_env()
    except (ConfigFileError, InstallationError, ValueError) as exc:
        print(f"shopsync worker: {exc}", file=sys.stderr)
        return 1
    for warning in installations.warnings:
        log.warning("installations_warning", detail=warning)
    if default_file := default_shops_file_warning(settings):
        log.warning("installations_default", detail=default_file)
    use_uvloop()
    app_kinds = ["realtime", "fullsync"] if queue == "all" else [queue]
    try:
        return asyncio.run(_serve(settings, installations, app_kinds, burst, walk_mode))
    except StartupError as exc:
        print(f"shopsync worker: {exc}", file=sys.stderr)
        return 1


class StartupError(Exception):
    """The worker cannot start (Redis, the token key): one line, exit 1, nothing changed."""


async def _serve(
    settings: Settings, installations: Installations, kinds: list[str], burst: bool, walk_mode: str
) -> int:
    keys = Keys(settings.key_prefix)
    try:
        pool = await job_pool(settings.redis_url)
    except (RedisError, OSError) as exc:  # arq retried its connection five times already
        raise StartupError(redis_failure(settings.redis_url, exc)) from None
    try:
        app = WorkerContext(
            settings=settings, installations=installations, redis=pool, keys=keys, walk_process=walk_mode
        )
    except TokenKeyError as exc:
        await pool.aclose()
        raise StartupError(str(exc)) from None
    workers = [build_worker(kind, app, burst=burst) for kind in with_audit(with_apply(kinds))]
    loop = asyncio.get_running_loop()
    watcher = FileWatcher(settings.shops_file, lambda: reload_installations(app, settings.shops_file))
    watcher.install_sighup()

    def stop(signum: int) -> None:
        log.info("worker_stopping", signal=signal.Signals(signum).name, grace_s=SHUTDOWN_GRACE_S)
        for w in workers:
            w.handle_sig_wait_for_completion(signal.Signals(signum))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    await app.start()
    watching = asyncio.create_task(watcher.run())
    log.info("worker_started", queues=[w.queue_name for w in workers], worker_id=app.worker_id)
    try:
        # return_exceptions: an idle queue's worker stops (its main task cancelled) at once; that
        # must not end the wait of the others, whose close() would cancel their running jobs.
        await asyncio.gather(*(keep_running(w) for w in workers), return_exceptions=True)
    except asyncio.CancelledError:
        pass
    finally:
        watching.cancel()
        # Jobs cancelled after the grace may take a moment to end: a walk's child process stops
        # its slice and releases the lease first (worker/fullsync/walk_process.py). arq's close()
        # cancels every unfinished job again, and a second cancel in its bookkeeping escapes.
        ending = [t for w in workers for t in w.tasks.values() if not t.done()]
        if ending:
            await asyncio.wait(ending, timeout=WIND_DOWN_S)
        for w in workers:
            with contextlib.suppress(Exception):
                await w.close()
        await app.close()
        await pool.aclose()
    log.info("worker_stopped")
    return 0


async def reload_installations(app: WorkerContext, path: str) -> dict[str, list[str]]:
    """Read and parse the installations file again and serve it (core/reload.py calls this on a
    change of the file or SIGHUP); a bad file raises and the process keeps what it had."""
    installations = parse_installations_toml(read_config_file(path), os.environ, source=path)
    for warning in installations.warnings:
        log.warning("installations_warning", detail=warning)
    return await app.reload(installations)


async def keep_running(worker: Worker, pause_s: float = RESTART_PAUSE_S) -> None:
    """Run the worker's poll loop, and run it again when a Redis error ends it.

    arq ends its loop on the first Redis error of its own bookkeeping (finishing a job, reading
    the queue): a Redis restart or a network blip would leave this process alive with a queue
    nobody reads (or, both loops ended, exit it). Jobs themselves already turn Redis errors into
    retries; here the loop itself comes back, after a pause, until the process is told to stop
    (a cancellation, which passes through).
    """
    abandoned: set[str] = set()
    tasks = _Tasks(worker.tasks)
    worker.tasks = tasks
    while True:
        try:
            if abandoned:
                await _release(worker, abandoned)
            await worker.async_run()
            return
        except (RedisError, OSError) as exc:
            log.warning(
                "worker_loop_restarting",
                queue=worker.queue_name,
                error=f"{type(exc).__name__}: {exc}",
                pause_s=pause_s,
            )
            abandoned |= _forget_finished_jobs(worker) | tasks.failed
            tasks.failed.clear()
            await asyncio.sleep(pause_s)


class _Tasks(dict[str, asyncio.Task[Any]]):
    """arq's `Worker.tasks` (job id -> the task running it), remembering the jobs whose task
    failed. arq drops a finished task from it and then re-raises the task's error, which ends
    its loop: without this, the very job whose bookkeeping failed would be forgotten, and would
    wait for its in-progress mark to expire (found by the redis-restart scenario)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failed: set[str] = set()

    def __delitem__(self, job_id: str) -> None:
        task = self[job_id]
        if task.done() and not task.cancelled() and task.exception() is not None:
            self.failed.add(job_id)
        super().__delitem__(job_id)


async def _release(worker: Worker, job_ids: set[str]) -> None:
    """Clear the in-progress marks of jobs this process gave up on (their task failed on Redis
    while finishing), so they run again now rather than when the marks expire (job timeout +
    10 s). Jobs are idempotent; nothing else runs them while the marks stand."""
    await worker.pool.delete(*(in_progress_key_prefix + job_id for job_id in job_ids))
    log.info("worker_jobs_released", queue=worker.queue_name, jobs=len(job_ids))
    job_ids.clear()


def _forget_finished_jobs(worker: Worker) -> set[str]:
    """Drop finished job tasks (their errors were the loop's end) and recount the running ones,
    so a failed start of a job cannot leave a job slot taken for good. Returns the ids of the
    jobs whose task failed: arq's own bookkeeping (finishing the job) did not happen."""
    failed: set[str] = set()
    for job_id, task in list(worker.tasks.items()):
        if task.done():
            del worker.tasks[job_id]
            if not task.cancelled() and task.exception() is not None:
                failed.add(job_id)
    running = len(worker.tasks)
    worker.job_counter = running
    worker.sem = asyncio.BoundedSemaphore(worker.max_jobs + 1)
    worker.sem._value -= running  # each running job releases its slot when it finishes
    return failed


def with_apply(kinds: list[str]) -> list[str]:
    """A real-time worker also runs the apply queue's (worker/coalesce.py): its deposits rely on it."""
    return [k for kind in kinds for k in ((kind, "apply") if kind == "realtime" else (kind,))]


def with_audit(kinds: list[str]) -> list[str]:
    """A full-sync worker also serves scheduled drift audits (worker/audit_schedule.py), on their
    own queue: their long timeout must not hold back the re-run of killed full-sync jobs."""
    return [*kinds, "audit"] if "fullsync" in kinds else kinds


def build_worker(kind: str, app: WorkerContext, *, burst: bool = False) -> Worker:
    if kind == "audit":
        return _audit_worker(app, burst=burst)
    realtime = kind in ("realtime", "apply")
    functions = {"realtime": realtime_functions, "apply": apply_functions}.get(kind, fullsync_functions)
    queues = {"realtime": app.keys.realtime_queue, "apply": app.keys.apply_queue}
    return PickupWorker(
        functions=functions(),
        cron_jobs=(
            [*realtime_cron_jobs(app.installations), *audit_schedule.cron_jobs(app.installations)]
            if kind == "realtime"
            else None
        ),
        queue_name=queues.get(kind, app.keys.fullsync_queue),
        redis_pool=app.redis,
        ctx={"app": app},
        burst=burst,
        handle_signals=False,
        job_completion_wait=SHUTDOWN_GRACE_S,
        # Real-time: many small jobs, picked up fast (the latency goal needs a short poll).
        # Full sync: fewer, longer batch jobs; their own queue so crashes there never hold
        # real-time recovery behind a long in-progress timeout.
        # Apply jobs (worker/coalesce.py): APSIS-bound, so their own slots; they are deferred
        # anyway, so a slower poll costs nothing.
        max_jobs=APPLY_MAX_JOBS if kind == "apply" else 50 if realtime else FULLSYNC_MAX_JOBS,
        poll_delay=0.1 if kind == "apply" else 0.02 if realtime else 0.2,
        job_timeout=REALTIME_JOB_TIMEOUT_S if realtime else FULLSYNC_JOB_TIMEOUT_S,
        max_tries=ARQ_MAX_TRIES,
        keep_result=60,
        health_check_interval=HEALTH_CHECK_S,
        job_serializer=serialize,
        job_deserializer=deserialize,
        expires_extra_ms=7 * 24 * 3600 * 1000,
    )


def _audit_worker(app: WorkerContext, *, burst: bool = False) -> Worker:
    return PickupWorker(
        functions=audit_schedule.functions(),
        queue_name=app.keys.audit_queue,
        redis_pool=app.redis,
        ctx={"app": app},
        burst=burst,
        handle_signals=False,
        job_completion_wait=SHUTDOWN_GRACE_S,
        max_jobs=audit_schedule.MAX_JOBS,
        poll_delay=1.0,
        job_timeout=audit_schedule.AUDIT_TIMEOUT_S,
        max_tries=1,
        keep_result=0,
        health_check_interval=HEALTH_CHECK_S,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )
