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


async def test_lock_and_read_and_a_releasing_save_are_what_their_separate_calls_do(
    redis_url: str, keys: Keys
) -> None:
    """The apply's first round trip (lock, pending, state, staged writes) and its last (save and
    unlock) against the separate calls they replace."""
    async with pipeline(redis_url, keys, customers=2) as p:
        store = p.app.customers
        shop, cid = p.shop.domain, 7000000099998
        update = {"kind": "rest", "payload": {"id": cid}, "received_at": 1.0}
        await store.deposit(shop, cid, "u1", update)
        await store.settle(
            shop, cid, await store.try_lock(shop, cid) or "", [], SyncState(customer_id=cid, email="a@x.se")
        )
        await p.redis.delete(keys.customer_lock(shop, cid))
        locked = await store.lock_and_read(shop, cid)
        assert locked is not None
        assert locked.entries == {"u1": update} == await store.pending(shop, cid)
        assert locked.stored == await store.load(shop, cid)
        assert await store.lock_and_read(shop, cid) is None  # held: nothing read
        assert await store.try_lock(shop, cid) is None
        state = SyncState(customer_id=cid, email="b@x.se")
        await store.settle(shop, cid, locked.token, ["u1"], state, {"m": 1.0}, release=True)
        assert not await p.redis.exists(keys.customer_lock(shop, cid))  # released with the save
        assert (await store.load(shop, cid)).state == state and await store.pending(shop, cid) == {}
        again = await store.lock_and_read(shop, cid)  # free again: taken, the saved state read
        assert again is not None and again.stored.state == state and again.entries == {}
        other = await store.lock_and_read(shop, 7000000099997)  # a customer never seen
        assert other is not None and other.entries == {} and other.stored.state is None


async def test_deposit_and_lock_is_a_deposit_then_lock_and_read(redis_url: str, keys: Keys) -> None:
    """A full-sync customer's first round trip: its update deposited and, when the lock is free,
    the lock taken and everything pending read with it; when busy, deposited all the same."""
    async with pipeline(redis_url, keys, customers=2) as p:
        store = p.app.customers
        shop, cid = p.shop.domain, 7000000099996
        first = {"kind": "rest", "payload": {"id": cid}, "received_at": 1.0}
        await store.deposit(shop, cid, "u0", first)
        second = {"kind": "rest", "payload": {"id": cid}, "received_at": 2.0}
        locked = await store.deposit_and_lock(shop, cid, "u1", second)
        assert locked is not None
        assert locked.entries == {"u0": first, "u1": second} == await store.pending(shop, cid)
        assert locked.stored == await store.load(shop, cid)
        assert await p.redis.pttl(keys.customer_lock(shop, cid)) > 0
        assert await p.redis.ttl(store.pending_key(shop, cid)) > customer_store.PENDING_TTL_S - 60
        third = {"kind": "rest", "payload": {"id": cid}, "received_at": 3.0}
        assert await store.deposit_and_lock(shop, cid, "u2", third) is None  # held: not read
        assert await store.is_pending(shop, cid, "u2")  # but deposited for the holder
