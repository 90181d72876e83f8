"""A full sync's bulk export and an audit's bulk export of the same shop, started together through
the real worker (arq, Redis, the sandbox store and APSIS account over HTTP): from 2026-01 both run
at once; before it the second waits for the first's bulk slot. Neither is refused by the store."""

from __future__ import annotations

import asyncio
import time

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.shopify.graphql import BULK
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker.audit import run_audit

SIZE = 40
EXPORT_S = 1.0  # how long the sandbox takes over one export


@pytest.mark.parametrize(("version", "together"), [("2025-10", 1), ("2026-10", 2)])
async def test_full_sync_and_audit_exports_share_the_shops_bulk_slots(
    redis_url: str, keys: Keys, version: str, together: int
) -> None:
    async with pipeline(
        redis_url,
        keys,
        customers=SIZE,
        workers=("realtime", "fullsync"),
        limits=FAST_LIMITS,
        sync={"bulk_export": True},
        graphql_api_version=version,
    ) as p:
        open_limits(p.store, p.account)
        registry = p.shopify.app[BULK]
        registry.objects_per_second = SIZE / EXPORT_S
        started = time.monotonic()
        full = await control.start_full_sync(p.redis, keys, p.shop.domain, bulk=True)
        audit = asyncio.create_task(run_audit(p.app, p.shop))
        record = await wait_finished(p.redis, keys, full.sync_id)
        report = (await audit).report
        elapsed = time.monotonic() - started

        assert record["state"] == "finished", record
        assert record["source"] == "bulk" and int(record["synced"]) == SIZE
        assert report.customers == SIZE  # the audit read every customer from its own export
        assert len(registry.operations) == 2
        assert (registry.peak, registry.refused) == (together, 0)
        if together == 1:
            assert elapsed > 2 * EXPORT_S  # one export after the other
        assert await p.app.shopify(p.shop).bulk_slots.held() == []
