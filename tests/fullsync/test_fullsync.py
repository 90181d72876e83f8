"""Full sync end to end: sandbox store -> coordinator and batch jobs -> APSIS sandbox."""

from __future__ import annotations

from sandbox.shopify.data import CUSTOMER_BASE
from shopsync import fullsync_control as control
from shopsync.keys import Keys
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import (
    FAST_LIMITS,
    attribute_writes_per_profile,
    open_limits,
    wait_finished,
)

WORKERS = ("realtime", "fullsync")


def store_ids(count: int) -> list[int]:
    return list(range(CUSTOMER_BASE, CUSTOMER_BASE + count))


async def test_full_sync_writes_every_customer_once(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=600, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        assert started.started
        again = await control.start_full_sync(p.redis, keys, p.shop.domain)
        assert again == control.Started(started.sync_id, False)
        record = await wait_finished(p.redis, keys, started.sync_id)
        ids = store_ids(600)
        assert p.mismatches(ids) == []
        counts = attribute_writes_per_profile(p.account)
        assert max(counts.values()) == 1
        assert record["seen"] == 600 and record["failed"] == 0
