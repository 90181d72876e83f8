"""What every job of a worker process shares: settings, installations, Redis, clients, metrics.

One `WorkerContext` per process, created before the arq workers start and closed after they
stop. API clients are created per shop / APSIS account on first use and then reused, so a
process holds one HTTP session per outside API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from arq.connections import ArqRedis

from core.keys import Keys
from core.settings import Settings
from core.sharedmetrics import SharedMetrics
from mappings.installation import Installations, Shop
from worker import metrics as worker_metrics
from worker.apsis_client import ApsisClient
from worker.customer_store import CustomerStore
from worker.ratelimit import RateLimiter
from worker.shopify_client import ShopifyClient

HEARTBEAT_S = 15
METRICS_FLUSH_S = 2
log = structlog.get_logger("worker")


@dataclass
class WorkerContext:
    settings: Settings
    installations: Installations
    redis: ArqRedis
    keys: Keys
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    metrics: SharedMetrics = field(init=False)
    limiter: RateLimiter = field(init=False)
    customers: CustomerStore = field(init=False)
    clients: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = SharedMetrics(self.redis, self.keys.metrics)
        worker_metrics.add_sink(self.metrics)  # API-client metrics reach Redis too
        self.limiter = RateLimiter(self.redis, self.keys)
        self.customers = CustomerStore(self.redis, self.keys)

    def apsis(self, shop: Shop) -> ApsisClient:
        """The APSIS client of the shop's account (one per account and process)."""
        key = f"apsis:{shop.apsis.base_url}:{shop.apsis.client_id}"
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = ApsisClient(
                shop.apsis, self.redis, self.limiter, self.keys, limits=shop.limits
            )
        return client

    def shopify(self, shop: Shop) -> ShopifyClient:
        key = f"shopify:{shop.domain}"
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = ShopifyClient(shop, self.redis, self.limiter, self.keys)
        return client

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(HEARTBEAT_S, self._heartbeat)),
            asyncio.create_task(self._every(METRICS_FLUSH_S, self.metrics.flush)),
        ]
        await self._heartbeat()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        worker_metrics.remove_sink(self.metrics)
        with contextlib.suppress(Exception):
            await self.metrics.flush()
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.keys.workers, self.worker_id)
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self.clients.clear()

    async def _heartbeat(self) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers, {self.worker_id: now})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - 86400)
            await pipe.execute()

    @staticmethod
    async def _every(seconds: float, action: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception as exc:  # a Redis blip must not end the loop
                log.warning("background_task_failed", task=getattr(action, "__name__", "?"), error=str(exc))
