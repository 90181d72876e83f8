"""A customer's lock while this worker applies its updates, renewed in the background.

`HeldLock` wraps a token from `CustomerStore.try_lock` (or `lock_and_read`): it renews the lock every third of its
time to live so a slow apply (APSIS retrying, a rate-limit wait) never outlives it, `check()`
raises a TransientError once it was lost (so nothing is sent on a lock another worker may hold),
and `release()` stops the renewal and unlocks (unless the save released the lock already).
"""

from __future__ import annotations

import asyncio

import structlog

from mappings.installation import Shop
from worker.context import WorkerContext
from worker.customer_store import LOCK_TTL_MS
from worker.runtime import TransientError

log = structlog.get_logger("worker.sync")


class HeldLock:
    """A customer's lock while this worker holds it, renewed in the background so a slow apply
    (APSIS retrying, a rate-limit wait) never outlives it; `check()` says whether it was lost."""

    def __init__(self, app: WorkerContext, shop: Shop, customer_id: int, token: str) -> None:
        self.store, self.shop, self.customer_id, self.token = app.customers, shop.domain, customer_id, token
        self.lost = False
        self.released = False  # the lock went with the save (`CustomerStore.settle(release=True)`)
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            try:
                if not await self.store.renew(self.shop, self.customer_id, self.token):
                    self.lost = True
                    return
            except Exception as exc:  # Redis unreachable: the next check or the save will tell
                log.warning("customer_lock_renewal_failed", customer_id=self.customer_id, error=str(exc))

    def check(self) -> None:
        if self.lost:
            raise TransientError(f"customer {self.customer_id}: lock lost; the update stays pending")

    async def release(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if not self.released:
            await self.store.unlock(self.shop, self.customer_id, self.token)
