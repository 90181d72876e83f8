"""Reconciliation: a filtered walk from the start of the last complete walk repairs lost webhooks."""

from __future__ import annotations

import time

from core import fullsync_control as control
from core.keys import Keys
from sandbox.shopify.data import CUSTOMER_BASE
from tests.e2e.harness import pipeline, wait_until_time_moves
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker.fullsync.reconcile import reconcile_due

WORKERS = ("realtime", "fullsync")


async def test_reconciliation_repairs_what_lost_webhooks_missed(redis_url: str, keys: Keys) -> None:
    size = 300
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        ids = list(range(CUSTOMER_BASE, CUSTOMER_BASE + size))
        # Never fully synced: nothing to reconcile from.
        assert await reconcile_due(p.app, time.time() + 10 * 3600) == []
        full = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await wait_finished(p.redis, keys, full.sync_id)
        assert p.mismatches(ids) == []

        # Webhooks stop arriving (the subscriptions are gone); the store keeps changing.
        for sub_id in list(p.store.subscriptions):
            p.store.remove_subscription(sub_id)
        wait_until_time_moves()
        changed = ids[10:15]
        for n, cid in enumerate(changed):
            await p.store.update_customer(cid, first_name=f"Missed {n}", city="Tromsø")
        assert p.mismatches(changed) != []

        # Not due before the interval (an hour by default) has passed since the last walk.
        assert await reconcile_due(p.app, time.time()) == []
        started = await reconcile_due(p.app, time.time() + p.shop.sync.reconcile_interval_s + 1)
        assert len(started) == 1
        record = await wait_finished(p.redis, keys, started[0])
        assert record["kind"] == "reconcile" and record["updated_at_min"]
        # Only what changed since the last walk is walked (plus nothing older).
        assert record["walked"] == len(changed) == record["total"]
        assert record["synced"] == len(changed)
        assert p.mismatches(ids) == []
        # The same hour again: no second reconciliation.
        assert await reconcile_due(p.app, time.time() + p.shop.sync.reconcile_interval_s + 1) == []
