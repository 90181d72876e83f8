"""Full sync end to end: sandbox store -> coordinator and batch jobs -> APSIS sandbox (in-process workers)."""

from __future__ import annotations

import asyncio
import math
import random
import signal
from typing import Any

import pytest

from core import fullsync_control as control
from core.keys import Keys
from mappings.installation_parse import parse_installations
from sandbox.installation import installation_document
from sandbox.shopify.data import CUSTOMER_BASE
from sandbox.shopify.graphql import BULK
from sandbox.shopify.store import SandboxError
from shopsync.fullsync_cli import summary
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.fullsync.helpers import (
    FAST_LIMITS,
    attribute_writes_per_profile,
    customers_per_page,
    last_seq,
    open_limits,
    wait_finished,
)
from worker.context import WorkerContext
from worker.fullsync import batches, walker

WORKERS = ("realtime", "fullsync")


def store_ids(count: int) -> list[int]:
    return list(range(CUSTOMER_BASE, CUSTOMER_BASE + count))


async def test_full_sync_then_unchanged_then_mapping_change_then_forced(redis_url: str, keys: Keys) -> None:
    size = 2000
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        ids = store_ids(size)

        # 1. Every customer synced, each profile section patched exactly once; one sync at a time.
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        assert started.started
        assert await control.start_full_sync(p.redis, keys, p.shop.domain) == control.Started(
            started.sync_id, False
        )
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert p.mismatches(ids) == []
        assert record["seen"] == record["total"] == size
        assert record["synced"] + record["skipped"] == size and record["failed"] == 0
        page = customers_per_page(p.shop.graphql_api_version)
        assert record["batches"] == record["batches_done"] == math.ceil(size / page)
        patches = attribute_writes_per_profile(p.account)
        assert len({key for key, _ in patches}) == size and set(patches.values()) == {1}
        consents = p.account.writes_of("consent")
        assert len({(w.params["profile_key"], tuple(sorted(w.summary.items()))) for w in consents}) == len(
            consents
        )
        assert await p.dead_letters() == []

        # 2. Nothing changed: no APSIS writes at all.
        before = last_seq(p.account)
        second = await control.start_full_sync(p.redis, keys, p.shop.domain)
        assert second.started and second.sync_id != started.sync_id
        record = await wait_finished(p.redis, keys, second.sync_id)
        assert p.account.writes_after(before) == []
        assert record["unchanged"] + record["skipped"] == size and record["synced"] == 0

        # 3. One more mapped attribute: exactly one patch per customer, with only that attribute.
        document = installation_document(p.shopify.url, p.apsis.url, p.shop.api_version, limits=FAST_LIMITS)
        document["shop"][0]["section"][0]["attributes"]["state"] = "1011"
        changed = parse_installations(document, env={}, source="changed-mapping")
        await p.stop_workers()
        old_app, old_installations = p.app, p.installations
        p.app = WorkerContext(settings=old_app.settings, installations=changed, redis=p.pool, keys=keys)
        p.installations = changed
        await p.app.start()
        try:
            await p.start_workers(WORKERS)
            before = last_seq(p.account)
            third = await control.start_full_sync(p.redis, keys, p.shop.domain)
            await wait_finished(p.redis, keys, third.sync_id)
            writes = p.account.writes_after(before)
            assert {w.kind for w in writes} == {"attributes"}
            assert {w.params["section"] for w in writes} == {SECTION_MAIN}
            assert all(set(w.summary) == {"1011"} for w in writes)
            assert len({w.params["profile_key"] for w in writes}) == len(writes) == size
            assert p.mismatches(ids) == []

            # 4. Forced: every profile section rewritten once more.
            before = last_seq(p.account)
            forced = await control.start_full_sync(p.redis, keys, p.shop.domain, force=True)
            record = await wait_finished(p.redis, keys, forced.sync_id)
            assert record["force"] is True and record["synced"] + record["skipped"] == size
            again = attribute_writes_per_profile(p.account, before)
            assert set(again) == set(patches) and set(again.values()) == {1}
            assert p.mismatches(ids) == []
        finally:
            await p.stop_workers()
            await p.app.close()
            p.app, p.installations = old_app, old_installations


async def test_realtime_updates_during_a_full_sync_win(redis_url: str, keys: Keys) -> None:
    size = 1500
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        # Slow APSIS down a little so that the sync is still running while the store changes.
        p.account.faults.set_latency(0.005, 0.02)
        ids = store_ids(size)
        rng = random.Random(5)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        changed: list[int] = []
        for i in range(40):
            cid = rng.choice(ids)
            changed.append(cid)
            try:
                if i % 4 == 0:
                    await p.store.update_customer(cid, first_name=f"Realtime {i}")
                elif i % 4 == 1:
                    await p.store.set_email_consent(cid, "subscribed")
                elif i % 4 == 2:
                    await p.store.change_email(cid, f"moved.{i}@example.org")
                else:
                    await p.store.add_tags(cid, ["vip", f"rt{i}"])
            except SandboxError:
                pass  # e.g. an email consent for a phone-only customer
            await asyncio.sleep(0.02)
        record = await control.read_sync(p.redis, keys, started.sync_id)
        assert record is not None and record["state"] == "running"  # the edits overlapped the sync
        await wait_finished(p.redis, keys, started.sync_id)
        await p.settle()
        assert p.mismatches(ids) == []
        assert await p.dead_letters() == []


async def test_bulk_export_sync(redis_url: str, keys: Keys) -> None:
    size = 700
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain, bulk=True)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["source"] == "bulk" and record["total"] == size == record["seen"]
        assert record["bulk_operation"].startswith("gid://shopify/BulkOperation/")
        assert p.mismatches(store_ids(size)) == []
        patches = attribute_writes_per_profile(p.account)
        assert len({key for key, _ in patches}) == size and set(patches.values()) == {1}
        # The same store again through REST: the bulk export's state holds, nothing to write.
        before = last_seq(p.account)
        rest = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await wait_finished(p.redis, keys, rest.sync_id)
        assert [w for w in p.account.writes_after(before) if w.kind == "attributes"] == []


async def test_a_customer_failing_for_good_is_counted_not_the_batch(redis_url: str, keys: Keys) -> None:
    size = 400
    # VIP customers get an attribute version APSIS does not know: their patch is refused (400).
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        document = installation_document(p.shopify.url, p.apsis.url, p.shop.api_version, limits=FAST_LIMITS)
        document["shop"][0]["section"][1]["attributes"]["last_name"] = "9999"
        broken = parse_installations(document, env={}, source="broken-vip")
        await p.stop_workers()
        old_app, old_installations = p.app, p.installations
        p.app = WorkerContext(settings=old_app.settings, installations=broken, redis=p.pool, keys=keys)
        p.installations = broken
        await p.app.start()
        try:
            await p.start_workers(WORKERS)
            started = await control.start_full_sync(p.redis, keys, p.shop.domain)
            record = await wait_finished(p.redis, keys, started.sync_id)
            vip = [cid for cid in store_ids(size) if _in_vip(p, cid)]
            assert vip and record["failed"] == len(vip)
            assert record["state"] == "finished" and record["seen"] == size
            assert await p.dead_letters() == []
        finally:
            await p.stop_workers()
            await p.app.close()
            p.app, p.installations = old_app, old_installations


def _in_vip(p: Any, cid: int) -> bool:
    state = p.expected(cid)
    return state is not None and "com.apsis1.sections.sandbox-vip" in state.sections


async def test_stopped_workers_resume_the_sync_where_it_was(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers stopped mid-sync (a deploy), started again: the walk resumes from its checkpoint."""
    monkeypatch.setattr(walker, "MAX_AHEAD", 2)  # the walk stays close to the batches
    size = 1500
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        p.account.faults.set_latency(0.005, 0.02)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        while True:
            record = await control.read_sync(p.redis, keys, started.sync_id)
            assert record is not None
            if record["seen"] >= size * 0.4:
                break
            await asyncio.sleep(0.02)
        # What `shopsync worker` does on SIGTERM: running jobs get the grace period, then are
        # cancelled (arq puts them back in the queue).
        for worker in p.workers:
            worker.handle_sig_wait_for_completion(signal.SIGTERM)
        await asyncio.gather(*p.worker_tasks, return_exceptions=True)
        await p.stop_workers()
        stopped = await control.read_sync(p.redis, keys, started.sync_id)
        assert stopped is not None and stopped["state"] == "running" and stopped["seen"] < size
        await p.start_workers(WORKERS)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["seen"] == size and record["failed"] == 0
        assert record["walked"] == size  # no page read into two batches
        assert p.mismatches(store_ids(size)) == []
        main = {
            k: n
            for (k, section), n in attribute_writes_per_profile(p.account).items()
            if section == SECTION_MAIN
        }
        page = customers_per_page(p.shop.graphql_api_version)
        assert len(main) == size and sum(1 for n in main.values() if n > 1) <= page


async def test_with_orders_sends_each_customers_past_orders(redis_url: str, keys: Keys) -> None:
    size = 120
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        assert batches.orders_hook() is not None
        started = await control.start_full_sync(p.redis, keys, p.shop.domain, with_orders=True)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["with_orders"] is True and record["failed"] == 0 and record["seen"] == size
        events = p.account.writes_of("events")
        assert events, "no purchase events sent"
        assert p.mismatches(store_ids(size)) == []
        # Again: every order was sent already, nothing new.
        before = last_seq(p.account)
        again = await control.start_full_sync(p.redis, keys, p.shop.domain, with_orders=True)
        await wait_finished(p.redis, keys, again.sync_id)
        assert p.account.writes_after(before) == []


async def test_a_walk_that_cannot_succeed_fails_the_sync(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=50, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        p.store.scopes = {"read_orders"}  # read_customers revoked: GraphQL answers 200 with ACCESS_DENIED
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["state"] == "failed" and "ACCESS_DENIED" in record["error"]
        assert "failed" in summary(record)
        # The shop is free again for the next sync.
        assert await control.running_sync(p.redis, keys, p.shop.domain) is None


async def test_a_bulk_walk_resumed_in_new_slices_reads_on_from_its_byte_offset(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each walk slice ends after one page here: every next slice downloads the export from the
    checkpoint's byte offset (a Range request the stored file answers with 206), not from its
    first line, and the sync is whole."""
    monkeypatch.setattr(walker, "WALK_SLICE_S", 0.0)
    size = 1000
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain, bulk=True)
        record = await wait_finished(p.redis, keys, started.sync_id)
        assert record["source"] == "bulk" and record["total"] == size == record["seen"]
        assert p.mismatches(store_ids(size)) == []
        (stored,) = p.shopify.app[BULK].files.files.values()
        assert stored.whole and record["offset"] == stored.size
        pages = math.ceil(size / walker.PAGE_SIZE)
        assert stored.ranges_served >= pages - 2  # the first slice (and at most one more) read from the start
