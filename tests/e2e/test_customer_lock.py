"""The per-customer lock: kept alive during a slow apply, and never saved through once lost."""

from __future__ import annotations

import pytest

from core.keys import Keys
from mappings.state import SyncState
from tests.e2e.harness import pipeline
from worker import customer_store, sync_lock
from worker.customer_store import LockLostError


async def test_a_worker_that_lost_the_lock_cannot_save_over_the_next_holder(
    redis_url: str, keys: Keys
) -> None:
    async with pipeline(redis_url, keys, customers=2) as p:
        store = p.app.customers
        shop, cid = p.shop.domain, 7000000099999
        await store.deposit(shop, cid, "u1", {"kind": "rest", "payload": {"id": cid}, "received_at": 1.0})
        mine = await store.try_lock(shop, cid)
        assert mine is not None
        # The lock expires under us and another worker takes it and saves its newer state.
        await p.redis.delete(keys.customer_lock(shop, cid))
        theirs = await store.try_lock(shop, cid)
        assert theirs is not None
        await store.settle(shop, cid, theirs, [], SyncState(customer_id=cid, email="new@example.com"))
        assert not await store.renew(shop, cid, mine)
        with pytest.raises(LockLostError):
            await store.settle(shop, cid, mine, ["u1"], SyncState(customer_id=cid, email="old@example.com"))
        stored = await store.load(shop, cid)
        assert stored.state is not None and stored.state.email == "new@example.com"
        assert await store.is_pending(shop, cid, "u1")  # still there for whoever applies next


async def test_a_slow_apply_keeps_its_lock(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customer_store, "LOCK_TTL_MS", 400)
    monkeypatch.setattr(sync_lock, "LOCK_TTL_MS", 400)
    async with pipeline(redis_url, keys, customers=2) as p:
        p.account.faults.set_latency(0.5)  # each APSIS call outlives the lock's time to live
        customer = await p.store.create_customer(email="slow@example.com", email_state="subscribed")
        await p.settle()
        assert p.mismatches([customer.id]) == []
        assert await p.dead_letters() == []
        assert await p.redis.zcard(keys.failures) == 0  # no "lock lost" retry: it was renewed
