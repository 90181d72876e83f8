"""A read of the whole customer that fails when it is needed (Shopify answering 429).

The reliability suite's shopify-429 losses: a trimmed 2025-01 `customers/update` (no tags) is a
customer's first sight, so the worker reads the whole customer; Shopify answers 429; the update
is applied with the tags unknown, and the full sync's snapshot of the customer, read before the
update, is then stale by `updated_at` and dropped whole. The tags were never written.
"""

from __future__ import annotations

import time

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import email_consent_payload, serialize_customer
from tests.e2e.harness import (
    SECTION_MAIN,
    SECTION_VIP,
    Pipeline,
    pipeline,
    shopify_answers_429,
    wait_until_time_moves,
)
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from worker import sync
from worker.fullsync.reconcile import reconcile_due
from worker.runtime import TransientError
from worker.sync_update import Update

API_VERSION = "2025-01"
FIRST_NAME, TAGS = "1002", "1007"  # attribute ids in the main section (mappings/demo.toml)


def _trimmed_update(customer: Customer) -> Update:
    now = time.time()
    return Update(
        kind="topic",
        topic="customers/update",
        payload=serialize_customer(customer, API_VERSION, for_webhook=True),
        received_at=now,
        triggered_at=now,
    )


def _attributes(p: Pipeline, customer: Customer) -> dict[str, object]:
    return p.account.get_attributes(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN)


async def _first_sight_without_tags(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch, *, retried: bool = True, customer: Customer | None = None
) -> tuple[Customer, Update]:
    """A VIP customer, the full sync's page of it (read now), then an edit whose trimmed webhook
    is applied while Shopify answers 429 (a TransientError for the job's retry while `retried`).
    Returns the customer and the full sync's update."""
    if customer is None:
        customer = await p.store.create_customer(email="fetch.fails@example.com", tags=["vip"])
    page = serialize_customer(customer, API_VERSION)
    wait_until_time_moves()
    changed = await p.store.update_customer(customer.id, first_name="Robert")
    assert "tags" not in _trimmed_update(changed).payload
    with shopify_answers_429(p, monkeypatch):
        if retried:
            with pytest.raises(TransientError, match="Shopify"):
                await sync.submit(p.app, p.shop, "wh:update", _trimmed_update(changed))
        else:
            assert await sync.submit(p.app, p.shop, "wh:update", _trimmed_update(changed)) == "written"
    # What the update knows is in APSIS already; the tags (and the VIP section) are owed.
    attributes = _attributes(p, changed)
    assert attributes[FIRST_NAME] == "Robert" and TAGS not in attributes
    assert not await p.app.customers.pending(p.shop.domain, customer.id)
    full = Update(kind="rest", payload=page, received_at=time.time(), source="fullsync")
    return changed, full


async def test_a_stale_full_sync_snapshot_after_a_failed_fetch_still_brings_the_tags(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3, api_version=API_VERSION, workers=()) as p:
        customer, full = await _first_sight_without_tags(p, monkeypatch)
        # The full sync's snapshot is older than the state: stale, but the worker reads the
        # customer again, since the tags are still owed.
        assert await sync.submit(p.app, p.shop, f"fs:test:{customer.id}", full) == "stale"
        assert _attributes(p, customer)[TAGS] == "vip"
        assert p.mismatches([customer.id]) == []
        assert p.account.profile(p.shop.apsis.keyspace, str(customer.id)) is not None
        stored = await p.app.customers.load(p.shop.domain, customer.id)
        assert stored.state is not None and SECTION_VIP in stored.state.sections
        assert sync.FETCH_OWED not in stored.marks


async def test_the_jobs_retry_alone_reads_the_customer_again(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else touches the customer: the retry of the job (an apply job's retry finds
    nothing pending) reads it again."""
    async with pipeline(redis_url, keys, customers=3, api_version=API_VERSION, workers=()) as p:
        customer, _ = await _first_sight_without_tags(p, monkeypatch)
        with shopify_answers_429(p, monkeypatch), pytest.raises(TransientError):
            await sync.apply_pending(p.app, p.shop, customer.id)  # still failing: retried again
        assert TAGS not in _attributes(p, customer)
        applied = await sync.apply_pending(p.app, p.shop, customer.id)
        assert applied is not None and applied.writes > 0
        assert p.mismatches([customer.id]) == []
        # Owed no more: the next apply with nothing pending does nothing.
        again = await sync.apply_pending(p.app, p.shop, customer.id)
        assert again is not None and again.writes == 0


async def test_past_the_retry_window_the_next_update_reads_the_customer(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `FETCH_RETRY_S` the apply no longer fails its job; the read stays owed, and the
    customer's next update (a consent topic, which would not read the customer by itself) does it."""
    monkeypatch.setattr(sync, "FETCH_RETRY_S", 0.0)
    async with pipeline(redis_url, keys, customers=3, api_version=API_VERSION, workers=()) as p:
        customer, _ = await _first_sight_without_tags(p, monkeypatch, retried=False)
        stored = await p.app.customers.load(p.shop.domain, customer.id)
        assert sync.FETCH_OWED in stored.marks
        wait_until_time_moves()
        changed = await p.store.set_email_consent(customer.id, "subscribed")
        now = time.time()
        consent = Update(
            kind="topic",
            topic="customers_email_marketing_consent/update",
            payload=email_consent_payload(changed),
            received_at=now,
            triggered_at=now,
        )
        # "unchanged": the read, done first, already brought the consent.
        assert await sync.submit(p.app, p.shop, "wh:consent", consent) in ("written", "unchanged")
        assert _attributes(p, changed)[TAGS] == "vip"
        assert p.mismatches([customer.id]) == []
        assert sync.FETCH_OWED not in (await p.app.customers.load(p.shop.domain, customer.id)).marks


async def test_the_hourly_reconciliation_heals_a_customer_whose_read_stayed_owed(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "FETCH_RETRY_S", 0.0)
    workers = ("realtime", "fullsync")
    async with pipeline(
        redis_url, keys, customers=20, api_version=API_VERSION, workers=workers, limits=FAST_LIMITS
    ) as p:
        open_limits(p.store, p.account)
        full = await control.start_full_sync(p.redis, keys, p.shop.domain)
        await wait_finished(p.redis, keys, full.sync_id)
        # Webhooks stop (their jobs would read the customer); a new customer is first seen by a
        # trimmed update whose read fails, and nothing else touches it.
        for sub_id in list(p.store.subscriptions):
            p.store.remove_subscription(sub_id)
        wait_until_time_moves()
        customer = await p.store.create_customer(email="reconciled@example.com", tags=["vip"])
        customer, _ = await _first_sight_without_tags(p, monkeypatch, retried=False, customer=customer)
        assert p.mismatches([customer.id]) != []

        started = await reconcile_due(p.app, time.time() + p.shop.sync.reconcile_interval_s + 1)
        assert len(started) == 1
        record = await wait_finished(p.redis, keys, started[0])
        assert record["state"] == control.FINISHED and record["synced"] >= 1, record
        assert p.mismatches([customer.id]) == []
        assert sync.FETCH_OWED not in (await p.app.customers.load(p.shop.domain, customer.id)).marks
