"""Full sync in the worker: a coordinator walks the store, batch jobs apply the customers.

The package registers its arq jobs (`functions()` for the full-sync queue, `cron_jobs()` for the
real-time worker) and names the time budgets the worker's settings are built around
(`JOB_TIMEOUT_S` and the budgets under it). The parts: `walker` (the coordinator job, a page at a
time into batches, handing over to a fresh job every slice; `walk_process` runs a heavy slice in a
child process), `source` (REST pages and bulk export lines), `batches` (the batch jobs, through
the real-time path's `submit`), `records` (load, fail, finish, history), `lease` (the renewed
claim a live job holds), `watchdog` (re-enqueues the parts whose job died) and `reconcile` (the
periodic filtered walk).
"""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob, cron
from arq.worker import func

from core import fullsync_control as control
from mappings.installation import Installations
from worker.fullsync import imports  # noqa: F401 (registers the profile-import path with the walk)
from worker.fullsync.batches import BATCH_TIMEOUT_S, full_sync_batch
from worker.fullsync.import_letters import RESEND_FUNCTION, RESEND_TIMEOUT_S, full_sync_import_resend
from worker.fullsync.lease import LEASE_TTL_MS
from worker.fullsync.reconcile import full_sync_reconcile
from worker.fullsync.walk_process import full_sync_walk
from worker.fullsync.walker import WALK_TIMEOUT_S
from worker.fullsync.watchdog import full_sync_watchdog

__all__ = [
    "BATCH_TIMEOUT_S",
    "CRON_TIMEOUT_S",
    "JOB_TIMEOUT_S",
    "LEASE_TTL_MS",
    "WALK_TIMEOUT_S",
    "WATCHDOG_SECONDS",
    "cron_jobs",
    "functions",
]

# arq's limit for our functions: above every budget (arq's own timeout fails a job without a
# Retry). A killed worker's jobs do not wait for it: their leases lapse and the watchdog hands
# the work to new jobs; the limit (+ 10 s) only keeps the superseded job's in-progress mark.
JOB_TIMEOUT_S = int(BATCH_TIMEOUT_S) + 30
# The watchdog and reconciliation crons run on the real-time worker, whose killed jobs come back
# after its longest function timeout + 10 s: they must stay under its job timeout (worker/main.py).
CRON_TIMEOUT_S = 20
WATCHDOG_SECONDS = frozenset(range(0, 60, 5))


def functions() -> list[Any]:
    return [
        func(full_sync_walk, name=control.WALK_FUNCTION, timeout=JOB_TIMEOUT_S, keep_result=0),
        func(full_sync_batch, name=control.BATCH_FUNCTION, timeout=JOB_TIMEOUT_S, keep_result=0),
        func(
            full_sync_import_resend, name=RESEND_FUNCTION, timeout=int(RESEND_TIMEOUT_S) + 30, keep_result=0
        ),
    ]


def cron_jobs(installations: Installations) -> list[CronJob]:
    # Cheap when idle: one SMEMBERS, one GET per shop. Unique per run across every worker.
    return (
        [
            cron(
                full_sync_watchdog,
                name="full_sync_watchdog",
                second=set(WATCHDOG_SECONDS),
                run_at_startup=True,
                timeout=CRON_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
            cron(
                full_sync_reconcile,
                name="full_sync_reconcile",
                second=0,
                timeout=CRON_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
        ]
        if installations.shops
        else []
    )
