"""Leases: the short, renewed claim a live walk or batch job holds on its part of a full sync.

A job takes its part's lease (`SET NX` with `LEASE_TTL_MS`) before working and renews it every
`LEASE_RENEW_S` while it works; a job killed mid-way stops renewing, the lease lapses within
seconds, and the watchdog (`worker.fullsync.watchdog`) hands the part to a new job. Renewal and
release only touch a lease that still carries this job's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from worker.context import WorkerContext

LEASE_TTL_MS = 10_000
LEASE_RENEW_S = 3.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A short, renewed claim on a walk or batch: held while a live job works on it."""

    def __init__(self, app: WorkerContext, key: str, token: str | None = None) -> None:
        self.app, self.key = app, key
        self.token = token or f"{app.worker_id}:{os.urandom(4).hex()}"
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        """Taken, or already held under this token (a walk process's lease, taken for it by its
        worker before it started: worker/fullsync/walk_process.py)."""
        taken = await self.app.redis.set(self.key, self.token, nx=True, px=LEASE_TTL_MS)
        if not taken and await self.app.redis.get(self.key) != self.token.encode():
            return False
        self._task = asyncio.create_task(self._renew())
        return True

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            with contextlib.suppress(Exception):
                await self.app.script(_RENEW)(keys=[self.key], args=[self.token, LEASE_TTL_MS])

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.app.script(_RELEASE)(keys=[self.key], args=[self.token])
