"""An apply whose writes reached APSIS but whose state never reached Redis (Redis went away, the
worker died, between APSIS's answer and the save): the next apply must know APSIS may hold them.

Both sequences are the reliability suite's redis-down losses: a consent opt-in sent, then the
store's email consent turned `pending` (a quiet state: it opts out only after a `subscribed`),
and the retry planned from the old state, where the opt-in never happened."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.keys import Keys
from mappings.installation import CHANNELS
from mappings.state import SyncState
from mappings.writes import AttributePatch
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import email_consent_payload, serialize_customer, tags_payload
from tests.e2e.harness import SECTION_MAIN, Pipeline, pipeline, wait_until_time_moves
from worker import sync
from worker.sync_update import Update

CONSENT_TOPIC = "customers_email_marketing_consent/update"


@contextmanager
def _save_fails_once(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The first save after APSIS took the writes fails as if Redis had just gone down."""
    store = p.app.customers
    real = store.settle
    failed: list[bool] = []

    async def settle(*args: Any, **kwargs: Any) -> None:
        if not failed:
            failed.append(True)
            raise RedisConnectionError("Error 111 connecting to Redis. Connection refused.")
        await real(*args, **kwargs)

    monkeypatch.setattr(store, "settle", settle)
    yield
    monkeypatch.setattr(store, "settle", real)
    assert failed, "the save never ran"


def _news_opted_in(p: Pipeline, customer: Customer) -> list[str]:
    return p.account.opted_in_topics(p.shop.apsis.keyspace, str(customer.id), SECTION_MAIN, CHANNELS["email"])


def _consent_hook(customer: Customer) -> Update:
    now = time.time()
    return Update(
        kind="topic",
        topic=CONSENT_TOPIC,
        payload=email_consent_payload(customer),
        received_at=now,
        triggered_at=now,
    )


async def test_a_full_sync_opt_in_never_saved_is_undone_by_a_later_pending(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        shop, store = p.shop, p.app.customers
        customer = await p.store.create_customer(email="unsaved.fs@example.com", email_state="subscribed")
        read = serialize_customer(customer, shop.api_version)  # the full sync's page, read now
        full = Update(kind="rest", payload=read, received_at=time.time(), source="fullsync")
        update_id = f"fs:test:{customer.id}"
        with _save_fails_once(p, monkeypatch), pytest.raises(RedisConnectionError):
            await sync.submit(p.app, shop, update_id, full)
        assert _news_opted_in(p, customer), "APSIS took the opt-in"

        wait_until_time_moves()
        changed = await p.store.set_email_consent(customer.id, "pending")
        hook = _consent_hook(changed)
        # The revived batch deposits the same (older) snapshot again, after the consent change.
        again = dataclasses.replace(full, received_at=time.time() + 1.0)
        await store.deposit(shop.domain, customer.id, update_id, again.to_dict())
        await sync.submit(p.app, shop, "wh:consent", hook)

        assert not await store.pending(shop.domain, customer.id)
        assert p.mismatches([customer.id]) == []


async def test_an_opt_in_from_a_fetch_never_saved_is_undone_by_a_later_pending(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=3, workers=()) as p:
        shop, store = p.shop, p.app.customers
        customer = await p.store.create_customer(
            email="unsaved.fetch@example.com", email_state="subscribed", tags=["sale"]
        )
        # A tags delta on tags never known: the worker reads the whole customer (subscribed).
        now = time.time()
        tags = Update(
            kind="topic",
            topic="customer.tags_added",
            payload=tags_payload(customer.id, ["sale"], customer.updated_at),
            received_at=now,
            triggered_at=now,
        )
        with _save_fails_once(p, monkeypatch), pytest.raises(RedisConnectionError):
            await sync.submit(p.app, shop, "wh:tags", tags)
        assert _news_opted_in(p, customer), "APSIS took the opt-in"

        wait_until_time_moves()
        changed = await p.store.set_email_consent(customer.id, "pending")
        # The retry folds the tags delta first again; its fetch now reads `pending`.
        await sync.submit(p.app, shop, "wh:consent", _consent_hook(changed))

        assert not await store.pending(shop.domain, customer.id)
        assert p.mismatches([customer.id]) == []


async def test_a_delete_drops_the_staged_writes(redis_url: str, keys: Keys) -> None:
    """Staged writes re-sent after a delete would bring the profile back."""
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        store, shop, cid = p.app.customers, p.shop.domain, 7000000099998
        token = await store.try_lock(shop, cid)
        assert token is not None
        patch = AttributePatch(SECTION_MAIN, {"1002": "Staged"}, str(cid))
        await store.stage(shop, cid, token, [patch], SyncState(customer_id=cid), {"customer": 1.0})
        staged = (await store.load(shop, cid)).staged
        assert staged is not None and staged.writes == (patch,) and staged.marks == {"customer": 1.0}
        await store.bury(shop, cid, time.time(), token, [])
        await store.unlock(shop, cid, token)
        assert (await store.load(shop, cid)).deleted_at is not None
        assert not await p.redis.exists(f"{keys.prefix}:staged:{shop}:{cid}")
