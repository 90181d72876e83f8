"""The whole pipeline, all real, in one test process: sandbox store -> signed webhooks over HTTP ->
receiver -> Redis -> arq workers -> APSIS sandbox over HTTP. Plus an oracle that computes, from the
store, what APSIS must hold, and a comparison customer by customer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from arq.connections import ArqRedis, create_pool
from arq.worker import Worker

from core.jobs import TOPIC_JOBS, deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings
from core.settings import Settings
from mappings.installation import Installations, Shop
from receiver.app import create_app
from reliability import oracle
from sandbox.apsis.account import Account, default_account
from sandbox.apsis.server import ApsisSandbox
from sandbox.installation import installation_document, installations_for, write_installation
from sandbox.shopify.delivery import DeliveryConfig
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.devredis import free_port
from worker.context import WorkerContext
from worker.main import build_worker, with_apply
from worker.retry import NO_RETRY

DOMAIN = "demo-store.myshopify.com"
SECTION_MAIN = "com.apsis1.sections.sandbox"
SECTION_VIP = "com.apsis1.sections.sandbox-vip"
ORACLE_VERSION = oracle.ORACLE_VERSION


def write_installation_file(directory: Path, p: Pipeline) -> Path:
    """The pipeline's installation as a TOML file, for `shopsync` subprocesses (SHOPS_FILE)."""
    document = installation_document(p.shopify.url, p.apsis.url, p.shop.api_version)
    return write_installation(directory / "shops.toml", document)


@dataclass
class Pipeline:
    keys: Keys
    redis: aioredis.Redis
    pool: ArqRedis
    installations: Installations
    shopify: ShopifySandbox
    apsis: ApsisSandbox
    receiver_url: str
    app: WorkerContext
    workers: list[Worker] = field(default_factory=list)
    worker_tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def shop(self) -> Shop:
        shop = self.installations.get(DOMAIN)
        assert shop is not None
        return shop

    @property
    def store(self) -> Store:
        return self.shopify.store

    @property
    def account(self) -> Account:
        return self.apsis.account

    def subscribe(self, api_version: str, topics: Iterable[str] = TOPIC_JOBS) -> None:
        for topic in topics:
            self.store.add_subscription(topic, f"{self.receiver_url}/webhooks/shopify", api_version)

    async def start_workers(self, kinds: Iterable[str] = ("realtime",)) -> None:
        for kind in with_apply(list(kinds)):  # real-time brings the apply queue along
            worker = build_worker(kind, self.app)
            self.workers.append(worker)
            self.worker_tasks.append(asyncio.create_task(worker.async_run()))

    async def stop_workers(self) -> None:
        for task in self.worker_tasks:
            task.cancel()
        await asyncio.gather(*self.worker_tasks, return_exceptions=True)
        for worker in self.workers:
            # arq's close() gathers its job tasks; one cancelled mid-bookkeeping (a superseded
            # full-sync job still finishing at teardown) re-raises CancelledError there.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await worker.close()
        self.workers.clear()
        self.worker_tasks.clear()

    async def settle(self, limit_s: float = 60.0) -> None:
        """Until every webhook is delivered and every job has run (twice quiet in a row)."""
        async with asyncio.timeout(limit_s):
            quiet = 0
            while quiet < 2:
                await self.store.deliverer.settled()
                busy = 0
                for queue in self.keys.queues:
                    busy += int(await self.redis.zcard(queue))
                quiet = quiet + 1 if busy == 0 else 0
                await asyncio.sleep(0.05)

    async def dead_letters(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.dead_letters)  # type: ignore[misc]
        return [orjson.loads(v) for v in raw.values()]

    # --- the oracle ------------------------------------------------------------------------------

    def expected(self, customer_id: int) -> Any:
        """The sync state that a fresh sync of the customer as the store has it now produces."""
        return oracle.expected_state(self.shop, self.store, customer_id)

    def mismatches(self, customer_ids: Iterable[int]) -> list[str]:
        """Every difference between APSIS and what the store says it must hold."""
        return oracle.mismatches(self.shop, self.store, self.account, customer_ids)


@asynccontextmanager
async def pipeline(
    redis_url: str,
    keys: Keys,
    *,
    customers: int = 50,
    seed: int = 7,
    api_version: str = "2024-10",
    subscribe_version: str | None = None,
    account: Account | None = None,
    delivery: DeliveryConfig | None = None,
    workers: Iterable[str] = ("realtime",),
    **shop_overrides: Any,
) -> AsyncIterator[Pipeline]:
    store = Store(
        seed=seed, size=customers, delivery=delivery or DeliveryConfig(time_scale=0.0005, seed=seed)
    )
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    async with (
        ApsisSandbox(account or default_account()) as apsis,
        ShopifySandbox(store) as shopify,
    ):
        installations = installations_for(shopify.url, apsis.url, api_version, **shop_overrides)
        receiver_app = create_app(installations, aioredis.Redis.from_url(redis_url), keys=keys)
        runner = web.AppRunner(receiver_app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
        app = WorkerContext(settings=settings, installations=installations, redis=pool, keys=keys)
        await app.start()
        p = Pipeline(
            keys=keys,
            redis=redis,
            pool=pool,
            installations=installations,
            shopify=shopify,
            apsis=apsis,
            receiver_url=f"http://127.0.0.1:{port}",
            app=app,
        )
        p.subscribe(subscribe_version or api_version)
        await p.start_workers(workers)
        try:
            yield p
        finally:
            await p.stop_workers()
            await app.close()
            await runner.cleanup()
            await pool.aclose()
            await redis.aclose()


def wait_until_time_moves() -> None:
    """Shopify times have second resolution: make the next mutation's updated_at strictly later."""
    time.sleep(1.01)


@contextmanager
def shopify_answers_429(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Admin API request answered 429, and no retry inside the request: a read fails."""
    monkeypatch.setattr(p.app.shopify(p.shop), "retry", NO_RETRY)
    p.store.rate_limit.fault_429_rate = 1.0
    try:
        yield
    finally:
        p.store.rate_limit.fault_429_rate = 0.0
