"""The receiver's /metrics: its own registry, the workers' shared metrics, gauges read at scrape."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis

from core.keys import Keys
from tests.e2e.harness import pipeline


async def test_metrics_show_jobs_api_requests_and_gauges(
    redis_url: str, keys: Keys, redis: aioredis.Redis
) -> None:
    async with pipeline(redis_url, keys, customers=5) as p:
        customer = await p.store.create_customer(email="metrics@example.com", email_state="subscribed")
        await p.settle()
        await p.store.update_customer(customer.id, first_name="Mia")
        await p.settle()
        assert p.mismatches([customer.id]) == []
        await p.app.metrics.flush()  # the worker does this every 2 s
        # A running full sync (as the full-sync jobs record it) shows up as progress gauges.
        await redis.zadd(keys.full_syncs, {"fs-1": 1.0})
        await redis.hset(  # type: ignore[misc]
            keys.full_sync_record("fs-1"),
            mapping={"sync_id": '"fs-1"', "shop": '"demo-store.myshopify.com"', "state": '"running"',
                     "total": "40", "seen": "12"},
        )  # fmt: skip
        async with aiohttp.ClientSession() as session, session.get(f"{p.receiver_url}/metrics") as r:
            assert r.status == 200
            text = await r.text()
    lines = text.splitlines()

    def value(prefix: str) -> float:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, f"no series starting with {prefix!r}"
        return sum(float(line.rsplit(" ", 1)[1]) for line in found)

    assert value('shopsync_jobs_total{function="sync_customer",outcome="ok"}') >= 2
    assert value('shopsync_job_seconds_count{function="sync_customer"}') >= 2
    assert value('shopsync_api_requests_total{api="apsis",method="PATCH"') >= 2
    assert "# TYPE shopsync_api_requests_total counter" in lines
    assert value("shopsync_webhooks_total{") >= 2  # the receiver's own registry
    assert value('shopsync_queue_jobs{queue="realtime",state="queued"}') == 0
    assert value("shopsync_workers_alive") == 1
    assert value("shopsync_dead_letters") == 0
    assert value('shopsync_full_sync_seen_customers{shop="demo-store.myshopify.com",sync_id="fs-1"}') == 12
    assert value('shopsync_full_sync_total_customers{shop="demo-store.myshopify.com",sync_id="fs-1"}') == 40
