"""The mandatory privacy topics and uninstall, end to end."""

from __future__ import annotations

from core.keys import Keys
from core.redis_conn import typed
from tests.e2e.harness import pipeline


async def test_customer_redact_deletes_the_profile_and_the_state(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer = await p.store.create_customer(email="gone@example.com", email_state="subscribed")
        await p.settle()
        assert p.account.profile(p.shop.apsis.keyspace, str(customer.id)) is not None
        await p.store.request_customer_data(customer.id)
        await p.store.redact_customer(customer.id)
        await p.settle()
        assert p.account.profile(p.shop.apsis.keyspace, str(customer.id)) is None
        raw = await p.redis.get(keys.customer_state(p.shop.domain, customer.id))
        assert raw is not None and b"gone@example.com" not in raw  # only a tombstone is left
        # A late update for the redacted customer does not bring the profile back.
        await p.store.update_customer(customer.id, first_name="Again")
        await p.settle()
        assert p.account.profile(p.shop.apsis.keyspace, str(customer.id)) is None
        assert await p.dead_letters() == []


async def test_shop_redact_stops_syncing_and_forgets_the_shop(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=3) as p:
        customer = await p.store.create_customer(email="kept@example.com")
        await p.settle()
        assert await typed(p.redis.scard(keys.shop_customers(p.shop.domain))) == 1
        await p.store.redact_shop()
        await p.settle()
        assert await typed(p.redis.sismember(keys.uninstalled, p.shop.domain))
        assert await p.redis.exists(keys.customer_state(p.shop.domain, customer.id)) == 0
        writes = len(p.account.writes)
        await p.store.update_customer(customer.id, first_name="Ignored")
        await p.settle()
        assert len(p.account.writes) == writes  # no longer synced
