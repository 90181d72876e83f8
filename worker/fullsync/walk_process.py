"""The walk job: a slice of a full sync's walk, in a child process at a lower CPU priority when heavy.

An import walk (worker/fullsync/imports.py) routes thousands of customers a second through the
mappings, builds the CSVs, then verifies and saves them: CPU that a worker process also needs
for its webhooks. Rests in the same process (`RealtimeLag.give_way`) kept it to half a process
and still tripled the other shops' webhook p99 (docs/PERFORMANCE-LOG.md, "Many shops"). So a worker
started by `shopsync worker` (`SHOPSYNC_WALK_PROCESS=child`, the default) runs such a slice in a
child process at niceness `SHOPSYNC_WALK_NICE` (10) under `SCHED_IDLE` (any runnable process of
normal priority preempts it at once; a nice task keeps the core for the rest of its slice): the
walk takes only the CPU that webhook work leaves, and the worker's own event loop stays free for
webhooks. The per-profile walk (a page read and a batch enqueued at a time) stays in the job's
process. Two guards for a machine the webhooks fill: the worker takes and renews the walk's
lease for its child (a starved child still holds its walk, and the watchdog starts no second one
beside it), and `keep_floor` lifts a starved child to a normal task for a second at a time.

The child is `main(SYNC_ID, GEN, PARENT_PID, BUDGET_S, LEASE_TOKEN)` in a new interpreter: it
reads the same environment and installations file as its worker, runs `walker.walk_slice` under
the lease its worker took, prints its result as JSON and exits 0, or `TEMPFAIL` after a transient
error (the job then ends in a Retry, as inline). It is killed with its worker
(PR_SET_PDEATHSIG). A cancelled job (its budget, the worker's shutdown) stops it with SIGTERM, as
does a platform stopping every process: its slice ends and releases the lease. A crash anywhere
loses at most a page, as the walk's transactions guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from core import fullsync_control as control
from core.config import read_config_file
from core.eventloop import use_uvloop
from core.fullsync_control import RUNNING, SyncKeys
from core.keys import Keys
from core.logging import configure_logging
from core.redis_conn import job_pool
from core.settings import Settings, env_int
from mappings.installation_parse import parse_installations_toml
from worker import budget, lanes
from worker.context import METRICS_FLUSH_S, WorkerContext
from worker.fullsync import imports
from worker.fullsync.lease import Lease
from worker.fullsync.records import load
from worker.fullsync.walker import WALK_TIMEOUT_S, walk_slice
from worker.runtime import TransientError, is_transient, run_job

log = structlog.get_logger("worker.fullsync")

MODES = ("child", "inline")
WALK_NICE = env_int("SHOPSYNC_WALK_NICE", 10)
WALK_SCHED_IDLE = os.environ.get("SHOPSYNC_WALK_SCHED_IDLE", "1") != "0"
IDLE_POLICY = WALK_SCHED_IDLE and hasattr(os, "SCHED_IDLE")  # asked for, and the OS has it
TEMPFAIL = 75  # EX_TEMPFAIL: a transient error, try the slice again later
# The floor under a SCHED_IDLE child (`keep_floor`): a window in which it waited on the run queue
# for more than STARVED_WAIT of the time and ran for less than FLOOR_SHARE of it makes the next
# window a normal task's (at its nice level).
FLOOR_WINDOW_S = 1.0
FLOOR_SHARE = 0.05
STARVED_WAIT = 0.5
FLOOR_METRIC = "shopsync_fullsync_walk_floor_total"
STOP_GRACE_S = 5.0  # after SIGTERM, the child's slice ends and releases its lease; then SIGKILL
_PR_SET_PDEATHSIG = 1
# Not `-m`: this module is imported by its package first, and runpy warns about running it again.
_CHILD = "import sys; from worker.fullsync.walk_process import main; sys.exit(main(sys.argv[1:]))"


def mode_from_env(env: dict[str, str] | None = None) -> str:
    """`SHOPSYNC_WALK_PROCESS` checked (a one-line error names the variable)."""
    value = (os.environ if env is None else env).get("SHOPSYNC_WALK_PROCESS") or "child"
    if value not in MODES:
        raise ValueError(f"SHOPSYNC_WALK_PROCESS must be one of {', '.join(MODES)}, not {value!r}")
    return value


async def full_sync_walk(ctx: dict[str, Any], sync_id: str, gen: int) -> Any:
    return await run_job(
        ctx,
        control.WALK_FUNCTION,
        _slice,
        (sync_id, gen),
        queue=ctx["app"].keys.fullsync_queue,
        timeout_s=WALK_TIMEOUT_S,
        bind={"sync_id": sync_id, "walk_gen": gen},
    )


async def _slice(app: WorkerContext, sync_id: str, gen: int) -> dict[str, Any]:
    if app.walk_process == "child" and await _heavy(app, sync_id, gen):
        return await run_in_child(app, sync_id, gen)
    return await walk_slice(app, sync_id, gen)


async def _heavy(app: WorkerContext, sync_id: str, gen: int) -> bool:
    """The slice walks through imports (or may: the first slice counts the store). A superseded
    slice is not (it ends inline at once): its worker would take the walk's lease for a child
    that has nothing to do, while the current slice needs it."""
    record = await load(app, sync_id)
    if record is None or record.get("state") != RUNNING or record.get("walk_done"):
        return False
    if int(record.get("walk_gen") or 0) != gen:
        return False
    shop = app.installations.get(str(record["shop"]))
    return shop is not None and imports.may_import(record, shop)


async def run_in_child(app: WorkerContext, sync_id: str, gen: int) -> dict[str, Any]:
    """The slice in a child process; its result, or the error it ended with."""
    settings = app.settings
    env = {
        **os.environ,  # the tokens' key, the API hosts' overrides, the walk's own settings
        "REDIS_URL": settings.redis_url,
        "SHOPS_FILE": settings.shops_file,
        "SHOPSYNC_KEY_PREFIX": settings.key_prefix,
        "LOG_FORMAT": settings.log_format,
        "LOG_LEVEL": settings.log_level,
    }
    remaining = budget.remaining()
    budget_s = WALK_TIMEOUT_S if remaining is None else max(remaining, 1.0)
    # The worker holds the walk's lease for its child, renewing it from here at normal priority:
    # a child that has no CPU yet (its imports, a machine the webhooks fill) still holds its walk,
    # and the watchdog does not start another beside it. It dies with this process (lapses).
    lease = Lease(app, SyncKeys(app.keys, sync_id).lease("walk"))
    if not await lease.acquire():
        return {"skipped": "walk lease held"}
    try:
        return await _run_child(
            app, env, [sync_id, str(gen), str(os.getpid()), f"{budget_s:.1f}", lease.token]
        )
    finally:
        await lease.release()  # the child released it already, unless it was killed


async def _run_child(app: WorkerContext, env: dict[str, str], args: list[str]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    # Lowered from here, at once: the child's own first second imports the worker's modules
    # (about 1 s of CPU), which at normal priority would compete with the webhooks every slice.
    _lower_priority(proc.pid)
    app.metrics.inc("shopsync_fullsync_walk_processes_total")
    log.info("walk_process_started", pid=proc.pid, nice=WALK_NICE)
    floor = asyncio.create_task(keep_floor(proc.pid, lambda: app.metrics.inc(FLOOR_METRIC)))
    try:
        out, _ = await proc.communicate()
    except BaseException:  # cancelled: the job's budget, or the worker shutting down
        await _stop(proc)
        raise
    finally:
        floor.cancel()
    return _outcome(proc.returncode, out)


async def keep_floor(pid: int, lifted: Callable[[], None], window_s: float = FLOOR_WINDOW_S) -> None:
    """A floor under the SCHED_IDLE child. While the webhooks take every cycle it gets none, and
    the sync would stand still for as long as the overload lasts (seen: 600 s of webhooks beyond
    the machine's capacity, not one customer walked). So after a window in which it was starved
    (`starved`), it runs the next window as a normal task at its nice level (`lifted()`: the
    worker counts those in `shopsync_fullsync_walk_floor_total`), then goes back to SCHED_IDLE.
    Where the kernel keeps no schedstat, there is no floor."""
    if not IDLE_POLICY:
        return
    last = _schedstat(pid)
    idle = True
    while last is not None:
        await asyncio.sleep(window_s)
        now = _schedstat(pid)
        if now is None:
            return  # it ended
        hungry = starved(now[0] - last[0], now[1] - last[1], window_s)
        last = now
        if idle and not hungry:
            continue
        idle = not idle
        with contextlib.suppress(OSError):
            policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
            os.sched_setscheduler(pid, policy, os.sched_param(0))
        if not idle:
            lifted()


def starved(ran_s: float, waited_s: float, window_s: float) -> bool:
    """Runnable most of the window and hardly run: no idle CPU was left for the child."""
    return waited_s > STARVED_WAIT * window_s and ran_s < FLOOR_SHARE * window_s


def _schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds the process has run and has waited on a run queue (Linux's /proc schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            ran, waited = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


def _outcome(code: int | None, out: bytes) -> dict[str, Any]:
    try:
        result = orjson.loads(out) if out.strip() else {}
    except orjson.JSONDecodeError:
        result = {}
    if code == 0 and isinstance(result, dict):
        return result
    detail = result.get("error") if isinstance(result, dict) else None
    if code == TEMPFAIL or code is None or code < 0:
        # A transient error, or the child killed (by a signal, the kernel's OOM killer): again later.
        raise TransientError(str(detail or f"the walk process ended with {code}"))
    raise RuntimeError(str(detail or f"the walk process ended with {code}"))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.shield(asyncio.wait_for(proc.wait(), STOP_GRACE_S))
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _lower_priority(pid: int) -> None:
    """The child at niceness `WALK_NICE` and under SCHED_IDLE (lowering a child's priority needs
    no privilege); refused, the walk still runs, at full priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, WALK_NICE)
        if IDLE_POLICY:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except ProcessLookupError:  # it ended already: its exit code tells
        pass
    except OSError as exc:
        log.warning("walk_process_priority_refused", error=str(exc))


# The child.


def _die_with(parent: int) -> None:
    """Killed when the worker dies (Linux), and an end now if it already has: a worker's crash
    ends its walk at once, as an inline walk's, and the lease lapses for the watchdog."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(TEMPFAIL)


def main(argv: list[str]) -> int:
    sync_id, gen, parent, budget_s, token = argv[0], int(argv[1]), int(argv[2]), float(argv[3]), argv[4]
    _die_with(parent)
    # Ctrl-C reaches the whole process group: the worker stops its jobs, and this one with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    use_uvloop()
    code, result = asyncio.run(_child(settings, sync_id, gen, budget_s, token))
    with contextlib.suppress(OSError):  # the worker is gone (its pipe closed): the code still says it
        sys.stdout.buffer.write(orjson.dumps(result))
        sys.stdout.flush()
    return code


async def _child(
    settings: Settings, sync_id: str, gen: int, budget_s: float, token: str
) -> tuple[int, dict[str, Any]]:
    try:
        path = settings.shops_file
        installations = parse_installations_toml(read_config_file(path), os.environ, source=path)
        pool = await job_pool(settings.redis_url)
    except Exception as exc:  # the worker read both a moment ago: a file being replaced, a blip
        return TEMPFAIL, {"error": f"{type(exc).__name__}: {exc}"}
    keys = Keys(settings.key_prefix)
    app = WorkerContext(settings=settings, installations=installations, redis=pool, keys=keys, dispatch_s=0)
    flushing = asyncio.create_task(app.flush_metrics_every(METRICS_FLUSH_S))
    walking = asyncio.current_task()
    assert walking is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, walking.cancel)
    lanes.enter(None, "bulk")
    structlog.contextvars.bind_contextvars(sync_id=sync_id, walk_gen=gen, walk_process=os.getpid())
    try:
        with budget.deadline(budget_s):
            async with asyncio.timeout(budget_s):
                result = await walk_slice(app, sync_id, gen, token)
        return 0, {**result, "walk_process": {"pid": os.getpid(), "nice": os.nice(0)}}
    except asyncio.CancelledError:
        return TEMPFAIL, {"error": "the walk process was stopped"}
    except Exception as exc:
        if is_transient(exc):
            return TEMPFAIL, {"error": f"{type(exc).__name__}: {exc}"}
        log.exception("walk_process_failed")
        return 1, {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        flushing.cancel()
        await app.close()
        await pool.aclose()
