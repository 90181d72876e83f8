"""Shared pieces of the full-sync tests: fast sandbox limits and waiting for a sync to end."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from arq.connections import create_pool

from core import fullsync_control as control
from core.jobs import deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings
from core.settings import Settings
from mappings.installation import Installations
from sandbox.apsis.account import Account
from sandbox.shopify.store import Store
from worker.context import WorkerContext
from worker.shopify_cost import page_size, per_node_cost
from worker.shopify_queries import customer_documents

# Installation limits far above the documented ones, for tests that must not wait on them.
FAST_LIMITS: dict[str, Any] = {
    "shopify_bucket_size": 400,
    "shopify_leak_per_s": 400.0,
    "apsis_requests_per_s": 5000.0,
    "apsis_profile_requests_per_s": 1000.0,
    "apsis_concurrency": 64,
}


@contextlib.asynccontextmanager
async def worker_app(
    redis_url: str, keys: Keys, installations: Installations
) -> AsyncIterator[WorkerContext]:
    """A worker process's context on the test's Redis and keys, closed afterwards."""
    pool = await create_pool(arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    app = WorkerContext(
        settings=Settings(redis_url=redis_url, key_prefix=keys.prefix),
        installations=installations,
        redis=pool,
        keys=keys,
    )
    try:
        yield app
    finally:
        await app.close()
        await pool.aclose()


def customers_per_page(graphql_api_version: str) -> int:
    """Customers in one GraphQL page (one full-sync batch) as the client sizes it with an open
    bucket: as many as Shopify's single-query maximum of 1,000 points allows."""
    documents = customer_documents(graphql_api_version)
    return page_size(per_node_cost(documents.customers, {"after": None, "query": None}))


def open_limits(store: Store, account: Account) -> None:
    # The GraphQL cost bucket (per app, sized from `rate_limit` at every request): far above
    # Shopify's plans (Enterprise restores 2,000 points/s), so a walk never waits for points.
    store.rate_limit.plan = "enterprise"
    store.rate_limit.graphql_maximum = 100_000.0
    store.rate_limit.graphql_restore_rate = 100_000.0
    account.set_rate_limits(account=None, profile=None)


async def wait_finished(
    redis: aioredis.Redis, keys: Keys, sync_id: str, limit_s: float = 120.0
) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            record = await control.read_sync(redis, keys, sync_id)
            assert record is not None
            if record["state"] in control.TERMINAL:
                return record
            await asyncio.sleep(0.1)


def attribute_writes_per_profile(account: Account, after_seq: int = 0) -> Counter[tuple[str, str]]:
    """(profile key, section) -> number of attribute patches in the write log after `after_seq`."""
    counts: Counter[tuple[str, str]] = Counter()
    for write in account.writes_after(after_seq):
        if write.kind == "attributes":
            counts[(write.params["profile_key"], write.params["section"])] += 1
    return counts


def last_seq(account: Account) -> int:
    writes = account.writes
    return writes[-1].seq if writes else 0
