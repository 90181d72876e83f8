"""Two shops on one deployment, end to end (sandbox stores -> signed webhooks -> receiver -> Redis ->
in-process arq workers -> two APSIS sandboxes): one shop's APSIS down backs that shop off alone
and loses nothing; removing a shop from the installations file parks its queued work, putting it
back runs it; the file watcher reloads on a change and survives a bad file."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from arq.connections import ArqRedis, create_pool
from arq.worker import Worker

from core.jobs import deserialize, serialize
from core.keys import Keys
from core.redis_conn import arq_settings, typed
from core.reload import FileWatcher
from core.settings import Settings
from mappings.installation import Installations
from mappings.installation_parse import parse_installations
from receiver.app import create_app
from reliability import oracle
from sandbox.apsis.account import default_account
from sandbox.apsis.server import ApsisSandbox
from sandbox.installation import installation_document
from sandbox.shopify.delivery import DeliveryConfig
from sandbox.shopify.server import ShopifySandbox
from sandbox.shopify.store import Store
from shopsync.devredis import free_port
from worker import shop_backoff
from worker.context import WorkerContext
from worker.main import build_worker, with_apply

A, B = "a-store.myshopify.com", "b-store.myshopify.com"


@dataclass
class Shops:
    keys: Keys
    redis: aioredis.Redis
    pool: ArqRedis
    document: dict[str, Any]
    stores: dict[str, Store]
    apsis: dict[str, ApsisSandbox]
    app: WorkerContext
    workers: list[Worker] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def installations(self, *domains: str) -> Installations:
        document = copy.deepcopy(self.document)
        document["shop"] = [s for s in document["shop"] if s["domain"] in domains]
        return parse_installations(document, env={}, source="two-shops")

    def mismatches(self, domain: str, ids: list[int]) -> list[str]:
        shop = self.installations(A, B).get(domain)
        assert shop is not None
        return oracle.mismatches(shop, self.stores[domain], self.apsis[domain].account, ids)

    async def dead_letters(self) -> list[Any]:
        return [orjson.loads(v) for v in (await typed(self.redis.hgetall(self.keys.dead_letters))).values()]

    async def held(self, domain: str) -> int:
        return int(await typed(self.redis.hlen(self.keys.held_jobs(domain))))

    async def until_synced(self, domain: str, ids: list[int], limit_s: float) -> None:
        async with asyncio.timeout(limit_s):
            while self.mismatches(domain, ids):  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.2)


@asynccontextmanager
async def two_shops(redis_url: str, keys: Keys) -> AsyncIterator[Shops]:
    stores = {
        d: Store(seed=i + 3, size=30, domain=d, delivery=DeliveryConfig(time_scale=0.0005, seed=i))
        for i, d in enumerate((A, B))
    }
    redis = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(arq_settings(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    async with (
        ApsisSandbox(default_account(client_id="client-a")) as apsis_a,
        ApsisSandbox(default_account(client_id="client-b")) as apsis_b,
        ShopifySandbox(stores[A]) as shopify_a,
        ShopifySandbox(stores[B]) as shopify_b,
    ):
        document = installation_document(shopify_a.url, apsis_a.url)
        first = document["shop"][0]
        first["domain"] = A
        second = copy.deepcopy(first)
        second.update(domain=B, admin_url=shopify_b.url)
        second["apsis"].update(base_url=apsis_b.url, client_id="client-b")
        first["apsis"]["client_id"] = "client-a"
        document["shop"] = [first, second]
        installations = parse_installations(document, env={}, source="two-shops")
        receiver = web.AppRunner(create_app(installations, aioredis.Redis.from_url(redis_url), keys=keys))
        await receiver.setup()
        port = free_port()
        await web.TCPSite(receiver, "127.0.0.1", port).start()
        for store in stores.values():
            for topic in ("customers/update", "customers/create"):
                store.add_subscription(topic, f"http://127.0.0.1:{port}/webhooks/shopify", "2024-10")
        settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
        app = WorkerContext(settings=settings, installations=installations, redis=pool, keys=keys)
        await app.start()
        shops = Shops(keys, redis, pool, document, stores, {A: apsis_a, B: apsis_b}, app)
        for kind in with_apply(["realtime"]):
            worker = build_worker(kind, app)
            shops.workers.append(worker)
            shops.tasks.append(asyncio.create_task(worker.async_run()))
        try:
            yield shops
        finally:
            for task in shops.tasks:
                task.cancel()
            await asyncio.gather(*shops.tasks, return_exceptions=True)
            for worker in shops.workers:
                await worker.close()
            await app.close()
            await receiver.cleanup()
            await pool.aclose()
            await redis.aclose()


async def _touch(store: Store, ids: list[int], name: str) -> None:
    for cid in ids:
        await store.update_customer(cid, first_name=name)
    await store.deliverer.settled()


@pytest.mark.slow  # about 40 s: the outage, two backoff periods and the retries' own backoff
async def test_one_shops_apsis_down_backs_it_off_alone_and_loses_nothing(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shop_backoff, "FIRST_S", 3.0)
    monkeypatch.setattr(shop_backoff, "MIN_SPAN_S", 1.0)
    monkeypatch.setattr(shop_backoff, "MIN_FAILURES", 4)
    async with two_shops(redis_url, keys) as s:
        ids = {d: sorted(s.stores[d].customer_ids())[:6] for d in (A, B)}
        s.apsis[A].account.faults.start_outage(time.time())  # A's APSIS answers 503 until told
        await _touch(s.stores[A], ids[A], "Outage")
        await _touch(s.stores[B], ids[B], "Fine")
        await s.until_synced(B, ids[B], 20)  # B goes on
        async with asyncio.timeout(20):
            while (await shop_backoff.records(s.redis, s.keys)).get(A) is None or not await s.held(A):  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.2)
        assert B not in await shop_backoff.records(s.redis, s.keys)
        # While A backs off, more of B's updates flow as fast as ever.
        started = time.monotonic()
        await _touch(s.stores[B], ids[B], "StillFine")
        await s.until_synced(B, ids[B], 10)
        assert time.monotonic() - started < 5
        # A's APSIS comes back: A's parked updates are released and applied, nothing lost.
        s.apsis[A].account.faults.end_outage()
        await s.until_synced(A, ids[A], 60)
        assert await s.dead_letters() == []
        report = await typed(s.app.redis.hget(s.keys.shop_errors, A))
        assert report is not None and "503" in str(report)  # A's last error, for the status pages
        async with asyncio.timeout(20):
            while A in await shop_backoff.records(s.redis, s.keys):  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.2)  # recovered: the backoff closes


async def test_reload_removes_and_adds_a_shop_without_losing_queued_work(redis_url: str, keys: Keys) -> None:
    async with two_shops(redis_url, keys) as s:
        ids = {d: sorted(s.stores[d].customer_ids())[:5] for d in (A, B)}
        change = await s.app.reload(s.installations(A))
        assert change == {"added": [], "removed": [B], "changed": []}
        # The receiver still takes B's webhooks (its own file may lag): the worker parks them.
        await _touch(s.stores[B], ids[B], "WhileAway")
        await _touch(s.stores[A], ids[A], "Meanwhile")
        await s.until_synced(A, ids[A], 20)  # the other shop is not disturbed
        async with asyncio.timeout(20):
            while await s.held(B) < len(ids[B]):  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.2)
        assert s.mismatches(B, ids[B])  # parked, not applied
        assert await s.dead_letters() == []
        change = await s.app.reload(s.installations(A, B))
        assert change["added"] == [B]
        await s.until_synced(B, ids[B], 20)
        assert await s.held(B) == 0 and await s.dead_letters() == []


async def test_file_watcher_reloads_on_change_and_survives_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "shops.toml"
    path.write_text("one")
    seen: list[str] = []

    async def reload() -> None:
        text = path.read_text()
        if text == "bad":
            raise ValueError("shop[0].domain: not a shop domain")
        seen.append(text)

    watcher = FileWatcher(str(path), reload, poll_s=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.1)
        assert seen == []  # unchanged: nothing reloaded
        path.write_text("two two")
        async with asyncio.timeout(2):
            while seen != ["two two"]:  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.02)
        path.write_text("bad")
        async with asyncio.timeout(2):
            while watcher.failures == 0:  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.02)
        assert seen == ["two two"]  # the bad file changed nothing
        watcher.trigger()  # SIGHUP: reload even without a change
        path.write_text("three")
        async with asyncio.timeout(2):
            while seen[-1] != "three":  # noqa: ASYNC110 - polling what other processes write
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
