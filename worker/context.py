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
from core.redis_conn import hgetall, typed
from core.redis_conn import script as redis_script
from core.settings import Settings
from core.sharedmetrics import SharedMetrics
from core.shopify_auth import MintedTokens, TokenCipher, TokenSource, is_minted, token_source
from mappings.installation import Installations, Shop
from worker import fair_dispatch, lanes, shop_backoff
from worker import metrics as worker_metrics
from worker.apsis_client import ApsisClient
from worker.customer_store import CustomerStore
from worker.held import release, release_ready
from worker.http import new_session
from worker.ratelimit import RateLimiter
from worker.realtime_lag import RealtimeLag
from worker.shopify_client import ShopifyClient

HEARTBEAT_S = 15
HOLD_CHECK_S = 30
RETIRE_S = 120.0  # a retired client (its shop removed or changed) is closed this much later
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
    realtime_lag: RealtimeLag = field(init=False)
    clients: dict[str, Any] = field(default_factory=dict)
    cipher: TokenCipher | None = None  # from SHOPSYNC_TOKEN_KEY when a shop mints its tokens
    hold_check_s: float = HOLD_CHECK_S
    token_sources: dict[str, TokenSource] = field(default_factory=dict)
    observer: shop_backoff.ApiObserver = field(default_factory=shop_backoff.ApiObserver)
    dispatch_s: float = fair_dispatch.DISPATCH_S  # 0: this process does not dispatch batches
    # "child": heavy full-sync walks run in a child process at a lower CPU priority
    # (worker/fullsync/walk_process.py); `shopsync worker` sets it, hand-built contexts walk inline.
    walk_process: str = "inline"
    _token_session: aiohttp.ClientSession | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _retired: list[Any] = field(default_factory=list)  # clients of changed shops, closed later

    def __post_init__(self) -> None:
        if self.cipher is None and any(is_minted(s) for s in self.installations.shops.values()):
            self.cipher = TokenCipher.from_env()  # a one-line error naming the variable
        self.metrics = SharedMetrics(self.redis, self.keys.metrics)
        worker_metrics.add_sink(self.metrics)  # API-client metrics reach Redis too
        worker_metrics.add_sink(self.observer)  # and each shop's answers its backoff
        self.observer.counts = self.metrics
        self.limiter = RateLimiter(self.redis, self.keys)
        self.customers = CustomerStore(self.redis, self.keys)
        self.realtime_lag = RealtimeLag(self.redis, self.keys)

    def script(self, source: str) -> Any:
        """The registered script of `source` (core.redis_conn.script: made once per client)."""
        return redis_script(self.redis, source)

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
            return await self.blocked_shops()

        async def reconnect(domain: str) -> bool:
            source = self.tokens(shops[domain])
            return isinstance(source, MintedTokens) and await source.reconnect()

        cc_shops = [d for d, s in shops.items() if s.auth.mode == "client_credentials"]
        return await release_ready(self.redis, self.keys, needing_approval, reconnect, cc_shops)

    async def blocked_shops(self, *, backoff: bool = True) -> dict[str, str]:
        """Shops whose held jobs must stay held, with why: needing approval, out of the
        installations file, or (with `backoff`) backing off or probing after a backoff, whose
        jobs worker/shop_backoff.py releases itself."""
        raw = await hgetall(self.redis, self.keys.needs_approval)
        blocked = {k.decode(): v.decode() for k, v in raw.items()}
        now = time.time()
        for raw_shop in await typed(self.redis.smembers(self.keys.held_shops)):
            shop = raw_shop.decode()
            if self.installations.get(shop) is None:
                blocked.setdefault(shop, "not in the installations file")
            elif not backoff:
                continue
            elif (parked := lanes.parked(shop, now)) is not None:
                blocked.setdefault(shop, f"backoff: {parked[1]}")
            elif lanes.probing(shop, now):
                blocked.setdefault(shop, "backoff: probing")
        return blocked

    async def backoff_tick(self) -> None:
        blocked = await self.blocked_shops(backoff=False)
        await shop_backoff.tick(self.redis, self.keys, self.observer, self.installations.shops, blocked)

    async def dispatch(self) -> None:
        await fair_dispatch.dispatch(self.redis, self.keys)

    async def publish_weights(self) -> list[str]:
        """The installations' full-sync weights for the dispatcher; the shops dropped from it."""
        weights = {d: s.sync.weight for d, s in self.installations.shops.items()}
        return await fair_dispatch.set_weights(self.redis, self.keys, weights)

    async def reload(self, new: Installations) -> dict[str, list[str]]:
        """Serve `new` installations from now on (the file was edited: worker/main.py watches it).

        Added shops run at once; a removed shop's jobs are parked, not dropped: its queued
        real-time jobs are held when they come up, its full-sync batches stay in its ready list
        and its sync's walk waits, all until the shop is back in the file. Clients of removed or
        changed shops are retired (closed after `RETIRE_S`, requests under way finish)."""
        old = self.installations.shops
        added = sorted(set(new.shops) - set(old))
        removed = sorted(set(old) - set(new.shops))
        changed = sorted(d for d in set(old) & set(new.shops) if old[d] != new.shops[d])
        if self.cipher is None and any(is_minted(s) for s in new.shops.values()):
            self.cipher = TokenCipher.from_env()  # raises before anything changed
        self.installations = new
        for domain in removed + changed:
            shop = old[domain]
            for key in (f"shopify:{domain}", f"apsis:{shop.apsis.base_url}:{shop.apsis.client_id}"):
                client = self.clients.pop(key, None)
                if client is not None:
                    self._retired.append(client)
            self.token_sources.pop(domain, None)
        if self._retired:
            self._tasks.append(asyncio.create_task(self._close_retired(list(self._retired))))
        await self.publish_weights()
        for domain in removed:
            ready = int(await typed(self.redis.llen(self.keys.fair_ready(domain))))
            held = int(await typed(self.redis.hlen(self.keys.held_jobs(domain))))
            log.warning(
                "shop_removed_jobs_parked",
                shop=domain,
                fullsync_batches_parked=ready,
                jobs_held=held,
                detail="its queued jobs are kept and run again if the shop comes back to the file",
            )
        blocked = await self.blocked_shops()
        for domain in added:
            if domain not in blocked:
                await release(self.redis, self.keys, domain)  # jobs parked while it was away
        log.info(
            "installations_reloaded", added=added, removed=removed, changed=changed, shops=len(new.shops)
        )
        return {"added": added, "removed": removed, "changed": changed}

    async def _close_retired(self, clients: list[Any]) -> None:
        await asyncio.sleep(RETIRE_S)
        for client in clients:
            if client in self._retired:
                self._retired.remove(client)
                with contextlib.suppress(Exception):
                    await client.close()

    async def start(self) -> None:
        await self.publish_weights()
        self._tasks = [
            asyncio.create_task(self._every(HEARTBEAT_S, self._heartbeat)),
            asyncio.create_task(self._every(METRICS_FLUSH_S, self.metrics.flush)),
            asyncio.create_task(self._every(self.hold_check_s, self.release_held)),
            asyncio.create_task(self._every(shop_backoff.TICK_S, self.backoff_tick)),
            asyncio.create_task(self._every(fair_dispatch.WEIGHTS_REFRESH_S, self.publish_weights)),
        ]
        if self.dispatch_s > 0:
            self._tasks.append(asyncio.create_task(self._every(self.dispatch_s, self.dispatch)))
        await self._heartbeat()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        worker_metrics.remove_sink(self.metrics)
        worker_metrics.remove_sink(self.observer)
        with contextlib.suppress(Exception):
            await self.metrics.flush()
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.keys.workers, self.worker_id)
        for client in [*self.clients.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await client.close()
        self.clients.clear()
        self._retired.clear()
        self.token_sources.clear()
        if self._token_session is not None:
            with contextlib.suppress(Exception):
                await self._token_session.close()
            self._token_session = None

    async def flush_metrics_every(self, seconds: float) -> None:
        """Only the metrics' flush, for a process that runs no arq worker (a walk's child)."""
        await self._every(seconds, self.metrics.flush)

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
