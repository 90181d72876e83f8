"""One worker process of the pool test: hammers APSIS and Shopify through the real clients.

Run as `python -m tests.clients.hammer '<json config>'`. Prints `ready` once set up, reads the
start time (epoch seconds) from stdin, runs until start + duration, then prints one JSON line:
requests by api and status as this process's client metrics counted them, and errors.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from core.keys import Keys
from core.logging import configure_logging
from mappings.installation import ApsisAccount, Limits, Shop
from worker import metrics
from worker.apsis_client import ApsisClient
from worker.errors import ApiError
from worker.ratelimit import RateLimiter
from worker.shopify_client import ShopifyClient


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    redis = Redis.from_url(cfg["redis_url"])
    keys = Keys(prefix=cfg["prefix"])
    limiter = RateLimiter(redis, keys)
    limits = Limits(**cfg["limits"])
    account = ApsisAccount(
        base_url=cfg["apsis_url"],
        client_id=cfg["client_id"],
        client_secret=cfg["client_secret"],
        keyspace=cfg["keyspace"],
    )
    errors: dict[str, int] = {}
    apsis = ApsisClient(account, redis, limiter, keys, limits=limits)
    shopify = None
    if cfg.get("shopify_url"):
        shop = Shop(
            domain=cfg["shop_domain"],
            admin_url=cfg["shopify_url"],
            api_version="2024-10",
            access_token=cfg["shop_token"],
            webhook_secret="unused",
            apsis=account,
            sections=(),
            limits=limits,
        )
        shopify = ShopifyClient(shop, redis, limiter, keys)
    rng = random.Random(cfg["seed"])
    profiles = itertools.count()

    def count_error(exc: ApiError) -> None:
        name = f"{exc.api}:{exc.status}:{type(exc).__name__}"
        errors[name] = errors.get(name, 0) + 1

    async def apsis_writer(hot: bool) -> None:
        while True:
            key = "hot-profile" if hot else f"p{cfg['seed']}-{next(profiles) % 5000}"
            try:
                await apsis.patch_attributes(
                    cfg["keyspace"], key, cfg["section"], {"1002": f"name {rng.random():.6f}"}
                )
            except ApiError as exc:
                count_error(exc)

    async def shopify_walker() -> None:
        assert shopify is not None
        while True:
            try:
                async for _page in shopify.iter_customer_pages(limit=cfg["shopify_page"]):
                    pass
            except ApiError as exc:
                count_error(exc)

    print("ready", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    tasks = [asyncio.create_task(apsis_writer(hot=False)) for _ in range(cfg["apsis_tasks"])]
    tasks += [asyncio.create_task(apsis_writer(hot=True)) for _ in range(cfg["hot_tasks"])]
    if shopify is not None:
        tasks += [asyncio.create_task(shopify_walker()) for _ in range(cfg["shopify_tasks"])]
    await asyncio.sleep(max(0.0, start_at + cfg["duration"] - time.time()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await apsis.close()
    if shopify is not None:
        await shopify.close()
    await redis.aclose()
    return {"requests": _requests(), "errors": errors, "throttled": _throttled()}


def _requests() -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in metrics.API_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = f"{sample.labels['api']}:{sample.labels['route']}:{sample.labels['status']}"
                out[key] = out.get(key, 0) + int(sample.value)
    return out


def _throttled() -> int:
    """GraphQL answers THROTTLED this process saw (each fed back to the shared bucket)."""
    total = 0
    for metric in metrics.LIMITER_FEEDBACK.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("reason") == "throttled":
                total += int(sample.value)
    return total


if __name__ == "__main__":
    configure_logging("json", "warning")  # stderr: stdout carries the protocol
    result = asyncio.run(run(orjson.loads(sys.argv[1])))
    print(orjson.dumps(result).decode(), flush=True)
