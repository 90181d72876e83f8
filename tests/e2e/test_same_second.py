"""Two edits of a customer in one second, with a full sync reading it between them.

Shopify's `updated_at` has whole seconds, so the full sync's snapshot and the later edit's
webhook carry one `updated_at`. Whichever was applied last used to win: a full sync page read
before the second edit, applied after its webhook, wrote the first edit back to APSIS
(tests/fullsync/test_fullsync.py::test_realtime_updates_during_a_full_sync_win failed so, now and
then). Now a full sync's snapshot tied with the state and carrying other values makes the
worker read the customer: the read is the customer as it is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from core.keys import Keys
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import serialize_customer
from tests.e2e.harness import SECTION_MAIN, Pipeline, pipeline, shopify_answers_429, wait_until_time_moves
from worker import sync
from worker.sync_update import Update

FIRST_NAME = "1002"  # the main section's first-name attribute (mappings/demo.toml)


def _webhook(p: Pipeline, customer: Customer) -> Update:
    now = time.time()
    payload = serialize_customer(customer, p.shop.api_version, for_webhook=True)
    return Update(kind="topic", topic="customers/update", payload=payload, received_at=now, triggered_at=now)


def _page(p: Pipeline, customer: Customer) -> Update:
    """The customer as a full sync's page carries it, read now."""
    payload = serialize_customer(customer, p.shop.api_version)
    return Update(kind="rest", payload=payload, received_at=time.time(), source="fullsync")


def _reads(p: Pipeline) -> int:
    """GraphQL operations the Shopify sandbox has executed."""
    return sum(p.shopify.graphql_counts().values())


def _first_name(p: Pipeline, customer: Customer) -> object:
    return p.account.get_attributes(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN).get(FIRST_NAME)


@asynccontextmanager
async def _one_second(p: Pipeline) -> AsyncIterator[tuple[Customer, Customer, Customer]]:
    """A synced customer, then two edits ("Early", "Late") with one `updated_at`: (synced, early, late)."""
    synced = await p.store.create_customer(email="same.second@example.com", first_name="Before")
    assert await sync.submit(p.app, p.shop, "fs:first", _page(p, synced)) == "written"
    wait_until_time_moves()
    frozen = time.time()
    p.store.clock = lambda: frozen
    early = await p.store.update_customer(synced.id, first_name="Early")
    late = await p.store.update_customer(synced.id, first_name="Late")
    assert early.updated_at == late.updated_at > synced.updated_at
    yield synced, early, late


async def test_a_page_read_before_the_later_edit_does_not_undo_it(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p, _one_second(p) as (_, early, late):
        assert await sync.submit(p.app, p.shop, "wh:late", _webhook(p, late)) == "written"
        assert _first_name(p, late) == "Late"
        # The page read between the edits comes last: tied with the state, another first name.
        reads = _reads(p)
        assert await sync.submit(p.app, p.shop, "fs:page", _page(p, early)) == "stale"
        assert _reads(p) == reads + 1  # the customer, read again
        assert _first_name(p, late) == "Late"
        assert p.mismatches([late.id]) == []
        # The same page once more is tied no more with a state that agrees: no read.
        assert await sync.submit(p.app, p.shop, "fs:again", _page(p, late)) == "unchanged"
        assert _reads(p) == reads + 1


async def test_a_page_read_after_the_later_edit_brings_it_before_its_webhook(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p, _one_second(p) as (_, early, late):
        assert await sync.submit(p.app, p.shop, "wh:early", _webhook(p, early)) == "written"
        # The full sync read the customer after the second edit, before that edit's webhook came.
        assert await sync.submit(p.app, p.shop, "fs:page", _page(p, late)) in ("written", "unchanged")
        assert _first_name(p, late) == "Late"
        assert await sync.submit(p.app, p.shop, "wh:late", _webhook(p, late)) == "unchanged"
        assert p.mismatches([late.id]) == []


async def test_without_the_read_the_state_stands(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shopify answers 429 to the read: the tied page is dropped, never written over the state
    (a newer edit than the state still has its webhook to come)."""
    async with pipeline(redis_url, keys, customers=3, workers=()) as p, _one_second(p) as (_, early, late):
        assert await sync.submit(p.app, p.shop, "wh:late", _webhook(p, late)) == "written"
        with shopify_answers_429(p, monkeypatch):
            assert await sync.submit(p.app, p.shop, "fs:page", _page(p, early)) == "stale"
        assert _first_name(p, late) == "Late"


async def test_webhooks_of_one_second_keep_shopifys_order(redis_url: str, keys: Keys) -> None:
    """Webhooks are not read again: the later event applies over the earlier, tie or not."""
    async with pipeline(redis_url, keys, customers=3, workers=()) as p, _one_second(p) as (_, early, late):
        reads = _reads(p)
        assert await sync.submit(p.app, p.shop, "wh:early", _webhook(p, early)) == "written"
        assert await sync.submit(p.app, p.shop, "wh:late", _webhook(p, late)) == "written"
        assert _first_name(p, late) == "Late"
        assert _reads(p) == reads
