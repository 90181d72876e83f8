"""What every job of a worker process shares: settings, installations, Redis, clients, metrics.

One `WorkerContext` per process, created before the arq workers start and closed after they
stop. API clients are created per shop / APSIS account on first use and then reused, so a
process holds one HTTP session per outside API. Each Shopify client draws its token from the
shop's token source (`core.shopify_auth.token_source`: the static token, or one minted token per
shop shared by the pool); shops that mint need `SHOPSYNC_TOKEN_KEY`, checked at creation. Every
`HOLD_CHECK_S` the process releases the held jobs of shops connected again (worker/held.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from arq.connections import ArqRedis

from core.keys import Keys
from core.redis_conn import hgetall
from core.settings import Settings
from core.sharedmetrics import SharedMetrics
from core.shopify_auth import MintedTokens, TokenCipher, TokenSource, is_minted, token_source
from mappings.installation import Installations, Shop
from worker import metrics as worker_metrics
from worker.apsis_client import ApsisClient
from worker.customer_store import CustomerStore
from worker.held import release_ready
from worker.http import new_session
from worker.ratelimit import RateLimiter
from worker.shopify_client import ShopifyClient

HEARTBEAT_S = 15
HOLD_CHECK_S = 30
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
    cipher: TokenCipher | None = None  # from SHOPSYNC_TOKEN_KEY when a shop mints its tokens
    hold_check_s: float = HOLD_CHECK_S
    token_sources: dict[str, TokenSource] = field(default_factory=dict)
    _token_session: aiohttp.ClientSession | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cipher is None and any(is_minted(s) for s in self.installations.shops.values()):
            self.cipher = TokenCipher.from_env()  # a one-line error naming the variable
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
            client = self.clients[key] = ShopifyClient(
                shop, self.redis, self.limiter, self.keys, tokens=self.tokens(shop)
            )
        return client

    def tokens(self, shop: Shop) -> TokenSource:
        """The shop's token source (one per shop and process; the token itself is pool-wide)."""
        source = self.token_sources.get(shop.domain)
        if source is None:
            if self._token_session is None:
                self._token_session = new_session()
            source = token_source(shop, self.redis, self.keys, self.cipher, self._token_session)
            self.token_sources[shop.domain] = source
        return source

    async def release_held(self) -> int:
        """Release the held jobs of shops connected again; try to reconnect client-credentials ones."""
        shops = self.installations.shops

        async def needing_approval() -> dict[str, str]:
            raw = await hgetall(self.redis, self.keys.needs_approval)
            return {k.decode(): v.decode() for k, v in raw.items()}

        async def reconnect(domain: str) -> bool:
            source = self.tokens(shops[domain])
            return isinstance(source, MintedTokens) and await source.reconnect()

        cc_shops = [d for d, s in shops.items() if s.auth.mode == "client_credentials"]
        return await release_ready(self.redis, self.keys, needing_approval, reconnect, cc_shops)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(HEARTBEAT_S, self._heartbeat)),
            asyncio.create_task(self._every(METRICS_FLUSH_S, self.metrics.flush)),
            asyncio.create_task(self._every(self.hold_check_s, self.release_held)),
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
        self.token_sources.clear()
        if self._token_session is not None:
            with contextlib.suppress(Exception):
                await self._token_session.close()
            self._token_session = None

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
