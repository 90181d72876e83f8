"""`/admin/*` routes, each behind the bearer token `ADMIN_TOKEN` (503 while none is configured)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web

from core import status
from core.keys import Keys
from core.redis_conn import hgetall
from receiver import admin_fullsync, adminpage
from receiver.appkeys import ADMIN_TOKEN, INSTALLATIONS, KEYS, REDIS
from receiver.problems import json_response, problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_token(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        expected = request.app[ADMIN_TOKEN]
        if not expected:
            return problem(503, "admin API disabled: set ADMIN_TOKEN")
        given = request.headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else request.cookies.get("shopsync_admin", "")
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            return problem(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return guarded


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/status", require_token(get_status))
    app.router.add_post("/admin/shops/{domain}/full-sync", require_token(admin_fullsync.post_full_sync))
    app.router.add_delete("/admin/shops/{domain}/full-sync", require_token(admin_fullsync.delete_full_sync))
    adminpage.add_routes(app)  # GET /admin, the HTML status page, and its login form


async def get_status(request: web.Request) -> web.StreamResponse:
    shops = request.app[INSTALLATIONS].shops
    accounts = {domain: shop.apsis.client_id for domain, shop in shops.items()}
    report = await status.collect(request.app[REDIS], request.app[KEYS], shops=shops, accounts=accounts)
    # Jobs finished so far, by outcome (from the workers' shared metrics): the page's jobs/s.
    report["jobs_total"] = await jobs_total(request.app[REDIS], request.app[KEYS])
    return json_response(report)


async def jobs_total(redis: aioredis.Redis, keys: Keys) -> dict[str, int]:
    totals: dict[str, int] = {}
    for series, value in (await hgetall(redis, keys.metrics)).items():
        name = series.decode()
        if name.startswith("shopsync_jobs_total{"):
            outcome = name.split('outcome="', 1)[1].split('"', 1)[0] if 'outcome="' in name else ""
            totals[outcome] = totals.get(outcome, 0) + round(float(value))
    return totals
