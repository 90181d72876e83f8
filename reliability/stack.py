"""One pipeline for one scenario: a private Redis (AOF), the sandbox store and APSIS account in
this process, `shopsync receiver` and `shopsync worker` processes, webhook subscriptions, and the
helpers every scenario needs (settle, check, dead letters, full sync)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.jobs import TOPIC_JOBS
from core.keys import Keys
from mappings.installation import Installations, Shop
from mappings.installation_parse import parse_installations
from reliability import oracle
from reliability.procs import ROOT, RedisServer, Service, service_env
from sandbox.apsis.account import Account, default_account
from sandbox.apsis.server import ApsisSandbox
from sandbox.installation import installation_document, write_installation
from sandbox.shopify.delivery import DeliveryConfig
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.devredis import free_port

DOMAIN = "demo-store.myshopify.com"
KEY_PREFIX = "rel"


@dataclass
class RunContext:
    """What outlives one scenario: where logs go, and every secret and address the suite used
    (the security scenario scans the logs for them)."""

    log_dir: Path
    short: bool = False
    # Timing goals (rates, latencies) fail a scenario only when asserted: `make reliability`
    # does; the short versions under `make test` report them (a noisy machine is no bug).
    assert_timing: bool = True
    secrets: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)

    def remember_store(self, store: Store, ids: Iterable[int] | None = None) -> None:
        for cid in ids if ids is not None else store.customer_ids():
            customer = store.customer(cid)
            if customer is None:
                continue
            if customer.email:
                self.emails.add(customer.email)
            if customer.phone:
                self.phones.add(customer.phone)
        self.secrets.update({store.access_token, store.webhook_secret})


def handled_topics() -> list[str]:
    """The topics whose job function the worker has (others would only be noise)."""
    from worker.jobs import realtime_functions

    names = {getattr(f, "__name__", "") for f in realtime_functions()}
    return [topic for topic, job in TOPIC_JOBS.items() if job in names]


def orders_available() -> bool:
    return "orders/paid" in handled_topics()


def full_sync_available() -> bool:
    from worker.jobs import fullsync_functions

    return bool(fullsync_functions())


@dataclass
class StackConfig:
    customers: int = 1000
    seed: int = 5
    receivers: int = 1
    workers: int = 2
    worker_queue: str = "all"
    api_version: str = "2024-10"
    time_scale: float = 0.02  # Shopify's retry schedule x this: 0.2 s, 1.2 s, 6 s, 12 s, ... 2 min
    account: Account | None = None
    admin_token: str | None = None
    log_level: str = "info"
    delivery_concurrency: int = 16
    # More shops on the same deployment (issue 17): each its own sandbox store and APSIS account.
    extra_shops: int = 0


@dataclass
class ExtraShop:
    """A shop beside the main one (`DOMAIN`): its own store, APSIS account and both sandboxes."""

    domain: str
    store: Store
    account: Account
    shopify: ShopifySandbox | None = None
    apsis: ApsisSandbox | None = None


class Stack:
    def __init__(self, run: RunContext, name: str, config: StackConfig) -> None:
        self.run = run
        self.name = name
        self.config = config
        self.keys = Keys(KEY_PREFIX)
        self.redis_server = RedisServer(run.log_dir / f"{name}-redis")
        self.store = Store(
            seed=config.seed,
            size=config.customers,
            delivery=DeliveryConfig(
                time_scale=config.time_scale, seed=config.seed, concurrency=config.delivery_concurrency
            ),
        )
        self.account = config.account or default_account()
        self.receivers: list[Service] = []
        self.workers: list[Service] = []
        self.redis: aioredis.Redis
        self.shopify: ShopifySandbox
        self.apsis: ApsisSandbox
        self.installations: Installations
        self.shops_file: Path
        self.full_sync_ids: list[str] = []
        self.extras: list[ExtraShop] = []
        self._record_tokens()

    def _record_tokens(self, account: Account | None = None) -> None:
        account = account or self.account
        issue = account.issue_token
        secrets = self.run.secrets

        def recording(client_id: str) -> tuple[str, int]:
            token, lifetime = issue(client_id)
            secrets.add(token)
            secrets.add(token.rsplit(".", 1)[-1])  # the random part alone
            return token, lifetime

        account.issue_token = recording  # type: ignore[method-assign]

    @property
    def shop(self) -> Shop:
        shop = self.installations.get(DOMAIN)
        assert shop is not None
        return shop

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "REDIS_URL": self.redis_server.url,
            "SHOPS_FILE": str(self.shops_file),
            "SHOPSYNC_KEY_PREFIX": KEY_PREFIX,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": self.config.log_level,
        }
        if self.config.admin_token:
            values["ADMIN_TOKEN"] = self.config.admin_token
        return service_env(**{**values, **extra})

    def receiver_url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.receivers[i].port}"

    # --- processes ------------------------------------------------------------------------------

    def add_receiver(self) -> Service:
        i = len(self.receivers)
        port = free_port()
        service = Service(
            f"receiver{i}",
            ["receiver"],
            self.env(PORT=str(port)),
            self.run.log_dir / f"{self.name}-receiver{i}.log",
            port=port,
        )
        self.receivers.append(service)
        service.start()
        return service

    def add_worker(self, queue: str | None = None) -> Service:
        i = len(self.workers)
        service = Service(
            f"worker{i}",
            ["worker", "--queue", queue or self.config.worker_queue],
            self.env(LOG_LEVEL="info"),  # readiness is its `worker_started` line
            self.run.log_dir / f"{self.name}-worker{i}.log",
        )
        self.workers.append(service)
        service.start()
        return service

    def subscribe(self, topics: Iterable[str] | None = None) -> None:
        """Each topic to one receiver, round robin (several receivers share the deliveries)."""
        for i, topic in enumerate(topics if topics is not None else handled_topics()):
            url = self.receiver_url(i % len(self.receivers))
            self.store.add_subscription(topic, f"{url}/webhooks/shopify", self.config.api_version)
            for extra in self.extras:
                extra.store.add_subscription(topic, f"{url}/webhooks/shopify", self.config.api_version)

    # --- waiting and checking -------------------------------------------------------------------

    async def queued(self) -> int:
        """Jobs waiting or deferred (retries), not counting arq's cron jobs (always scheduled),
        nor full-sync jobs left "in progress" by a killed worker once no full sync runs: the
        watchdog handed their work to new jobs, and arq only drops them when their in-progress
        key expires (the full-sync job timeout + 10 s, several minutes)."""
        total = 0
        syncing = await self.running_full_syncs() > 0
        for queue in self.keys.queues:
            for job_id in await self.redis.zrange(queue, 0, -1):
                if job_id.startswith(b"cron:"):
                    continue
                orphan = queue == self.keys.fullsync_queue and not syncing
                if orphan and await self.redis.exists(b"arq:in-progress:" + job_id):
                    continue
                total += 1
        return total

    async def queued_functions(self) -> list[str]:
        """`queue: function (in progress?)` of every job still queued, for failure messages."""
        out = []
        for queue in self.keys.queues:
            for job_id in await self.redis.zrange(queue, 0, -1):
                if job_id.startswith(b"cron:"):
                    continue
                raw = await self.redis.get(b"arq:job:" + job_id)
                function = orjson.loads(raw).get("f", "?") if raw else "(no job)"
                busy = await self.redis.exists(b"arq:in-progress:" + job_id)
                out.append(f"{queue.rsplit(':', 1)[-1]}: {function}{' (in progress)' if busy else ''}")
        return out

    async def settle(self, limit_s: float = 300.0) -> None:
        """Until every webhook is delivered, every full sync finished and every job has run."""
        async with asyncio.timeout(limit_s):
            quiet = 0
            while quiet < 3:
                await self.store.deliverer.settled()
                for extra in self.extras:
                    await extra.store.deliverer.settled()
                try:
                    busy = await self.queued() + await self.running_full_syncs()
                except RedisError:
                    busy = 1
                quiet = quiet + 1 if busy == 0 else 0
                await asyncio.sleep(0.2)

    def touched(self) -> set[int]:
        """Customers changed by the scenario (created, edited, deleted)."""
        return set(self.store.overrides) | set(self.store.deleted)

    def all_ids(self) -> list[int]:
        base = list(self.store.customer_ids())
        return sorted(set(base) | self.touched())

    def check(self, ids: Iterable[int]) -> tuple[int, list[str]]:
        ids = list(ids)
        self.run.remember_store(self.store, ids)
        return len(ids), oracle.mismatches(self.shop, self.store, self.account, ids)

    def check_extra(self, extra: ExtraShop, ids: Iterable[int]) -> tuple[int, list[str]]:
        """Like `check`, for one of the extra shops."""
        ids = list(ids)
        shop = self.installations.get(extra.domain)
        assert shop is not None
        self.run.remember_store(extra.store, ids)
        return len(ids), oracle.mismatches(shop, extra.store, extra.account, ids)

    def check_orders(self) -> oracle.OrderCheck:
        return oracle.order_events(self.shop, self.store, self.account, self.store.new_order_ids)

    async def dead_letters(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.dead_letters)  # type: ignore[misc]
        return [orjson.loads(v) for v in raw.values()]

    # --- full sync (issue 6) --------------------------------------------------------------------

    async def start_full_sync(self) -> str | None:
        """Enqueue a full sync through the operator's command; None when the service has none."""
        if not full_sync_available():
            return None
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "shopsync.cli", "full-sync", DOMAIN],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        with (self.run.log_dir / f"{self.name}-cli.log").open("a") as log:
            log.write(out.stdout + out.stderr)
        if out.returncode != 0:
            raise RuntimeError(f"shopsync full-sync failed: {out.stderr.strip()}")
        sync_id = out.stdout.strip().split()[-1]  # the command prints the id
        self.full_sync_ids.append(sync_id)
        return sync_id

    async def full_sync_record(self, sync_id: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self.keys.full_sync_record(sync_id))  # type: ignore[misc]
        record: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                record[k.decode()] = orjson.loads(v)
            except orjson.JSONDecodeError:
                record[k.decode()] = v.decode()
        return record

    async def running_full_syncs(self) -> int:
        running = 0
        for sync_id in self.full_sync_ids:
            record = await self.full_sync_record(sync_id)
            if record.get("state") == "running":
                running += 1
        return running


@asynccontextmanager
async def stack(run: RunContext, name: str, config: StackConfig | None = None) -> AsyncIterator[Stack]:
    config = config or StackConfig()
    s = Stack(run, name, config)
    s.redis_server.start()
    s.redis = aioredis.Redis.from_url(s.redis_server.url)
    try:
        async with (
            ApsisSandbox(s.account) as apsis,
            ShopifySandbox(s.store) as shopify,
            contextlib.AsyncExitStack() as extras,
        ):
            s.apsis, s.shopify = apsis, shopify
            document = installation_document(shopify.url, apsis.url, config.api_version)
            for i in range(1, config.extra_shops + 1):
                extra = ExtraShop(
                    f"shop-{i}.myshopify.com",
                    Store(
                        seed=config.seed + i,
                        size=config.customers,
                        domain=f"shop-{i}.myshopify.com",
                        delivery=DeliveryConfig(
                            time_scale=config.time_scale,
                            seed=config.seed + i,
                            concurrency=config.delivery_concurrency,
                        ),
                    ),
                    default_account(client_id=f"client-{i}"),
                )
                s._record_tokens(extra.account)
                extra.apsis = await extras.enter_async_context(ApsisSandbox(extra.account))
                extra.shopify = await extras.enter_async_context(ShopifySandbox(extra.store))
                s.extras.append(extra)
            document["shop"] += [_extra_shop(document["shop"][0], x) for x in s.extras]
            s.shops_file = write_installation(run.log_dir / f"{name}-shops.toml", document)
            s.installations = parse_installations(document, env={}, source="sandbox-installation")
            s.run.secrets.update({s.shop.apsis.client_secret, s.shop.access_token, s.shop.webhook_secret})
            if config.admin_token:
                s.run.secrets.add(config.admin_token)
            try:
                for _ in range(config.receivers):
                    s.add_receiver()
                for _ in range(config.workers):
                    s.add_worker()
                await asyncio.gather(*(svc.ready() for svc in s.receivers + s.workers))
                yield s
            finally:
                for svc in s.receivers + s.workers:
                    await asyncio.to_thread(svc.stop)
    finally:
        with contextlib.suppress(Exception):
            await s.redis.aclose()
        s.redis_server.stop()


def _extra_shop(first: dict[str, Any], extra: ExtraShop) -> dict[str, Any]:
    assert extra.shopify is not None and extra.apsis is not None
    shop = copy.deepcopy(first)
    shop.update(domain=extra.domain, admin_url=extra.shopify.url)
    shop["apsis"].update(base_url=extra.apsis.url, client_id=next(iter(extra.account.clients)))
    return shop


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
