"""The receiver's aiohttp application: webhook route, health, readiness, metrics, admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from core.keys import Keys
from mappings.installation import Installations
from receiver import admin, auth, scrape
from receiver.appkeys import ADMIN_TOKEN, ENQUEUER, INSTALLATIONS, KEYS, METRICS, REDIS
from receiver.enqueue import BatchEnqueuer
from receiver.live import LiveInstallations
from receiver.metrics import ReceiverMetrics
from receiver.problems import json_response, problem
from receiver.redis_pipe import RedisAddress, RedisPipe
from receiver.webhooks import MAX_BODY_BYTES, webhook_handler


def create_app(
    installations: Installations | LiveInstallations,
    redis: aioredis.Redis,
    *,
    keys: Keys | None = None,
    admin_token: str | None = None,
    close_redis: bool = True,
) -> web.Application:
    # No middlewares: each one costs every webhook a layer of calls; admin routes check their
    # token themselves (receiver.admin.require_token).
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    live = installations if isinstance(installations, LiveInstallations) else LiveInstallations(installations)
    app[INSTALLATIONS] = live
    app[REDIS] = redis
    app[KEYS] = keys or Keys()
    app[METRICS] = ReceiverMetrics()
    # Webhook jobs go through a pipelined connection of their own (receiver.redis_pipe); the
    # other routes use the redis-py client, whose settings the pipe copies.
    pipe = RedisPipe(RedisAddress.of_client(redis))
    app[ENQUEUER] = BatchEnqueuer(pipe, app[KEYS], app[KEYS].realtime_queue)
    app[ADMIN_TOKEN] = admin_token or ""
    app.router.add_post("/webhooks/shopify", webhook_handler(live, app[ENQUEUER], app[METRICS]))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    admin.add_routes(app)
    auth.add_routes(app)  # GET /auth/install, /auth/callback: the OAuth install flow

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[ENQUEUER].close()
        await pipe.close()
        if close_redis:
            await redis.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(1.0):
            await request.app[REDIS].ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return problem(503, f"redis unavailable: {type(exc).__name__}")
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    redis, keys = request.app[REDIS], request.app[KEYS]
    try:
        async with asyncio.timeout(2.0):
            # The workers' counters (through Redis) and gauges read now; see receiver.scrape.
            body += (await scrape.shared(redis, keys)).encode()
            body += (await scrape.gauges(redis, keys, request.app[INSTALLATIONS].shops)).encode()
    except (RedisError, OSError, TimeoutError):
        request.app[METRICS].scrape_failures.inc()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
