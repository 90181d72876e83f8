"""Reconciliation: a periodic filtered walk that repairs what the webhooks missed.

`full_sync_reconcile` (cron, every minute) starts a reconciliation per shop when its interval
has passed since its last complete walk (or last attempt): the same walk, filtered by
`updated_at_min` = start of the last completed walk, less `RECONCILE_MARGIN_S`. A shop never
fully synced is left alone: reconciliation repairs a synced store, it does not seed one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from core import fullsync_control as control
from core.redis_conn import typed
from worker.context import WorkerContext

log = structlog.get_logger("worker.fullsync")

RECONCILE_MARGIN_S = 120  # updated_at has second resolution and clocks differ: walk a bit earlier


def reconcile_attempt_key(app: WorkerContext, shop: str) -> str:
    return f"{app.keys.prefix}:fullsync-reconciled:{shop}"


async def full_sync_reconcile(ctx: dict[str, Any]) -> dict[str, Any]:
    app: WorkerContext = ctx["app"]
    started = await reconcile_due(app, time.time())
    return {"started": started}


async def reconcile_due(app: WorkerContext, now: float) -> list[str]:
    """Start a reconciliation of every shop whose interval has passed since its last walk."""
    started: list[str] = []
    for shop in app.installations.shops.values():
        if await typed(app.redis.sismember(app.keys.uninstalled, shop.domain)):
            continue
        raw = await app.redis.get(control.walked_key(app.keys, shop.domain))
        if raw is None:
            continue  # never fully synced: reconciliation repairs a synced store, it does not seed one
        walked_from = float(orjson.loads(raw)["started_at"])
        attempted = await app.redis.get(reconcile_attempt_key(app, shop.domain))
        last = max(walked_from, float(attempted) if attempted else 0.0)
        if now - last < shop.sync.reconcile_interval_s:
            continue
        await app.redis.set(reconcile_attempt_key(app, shop.domain), str(now), ex=30 * 24 * 3600)
        since = datetime.fromtimestamp(walked_from - RECONCILE_MARGIN_S, UTC).isoformat()
        result = await control.start_full_sync(
            app.redis, app.keys, shop.domain, kind="reconcile", updated_at_min=since
        )
        if result.started:
            started.append(result.sync_id)
            log.info("reconcile_started", shop=shop.domain, sync_id=result.sync_id, updated_at_min=since)
    return started
