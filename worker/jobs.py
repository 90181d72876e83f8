"""The arq job functions, one per topic family (see `shopsync.jobs.TOPIC_JOBS`), and the lists
each queue's worker registers. Job bodies live in their own modules; this file only wires them
through `worker.runtime.run_job` (failure policy) with their arguments decoded.
"""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob

from mappings.installation import Installations
from shopsync.jobs import Delivery
from shopsync.redis_conn import typed
from worker.context import WorkerContext
from worker.runtime import run_job

REALTIME_TIMEOUT_S = 90


def _delivery_bind(delivery: Delivery) -> dict[str, Any]:
    return {"shop": delivery.shop, "topic": delivery.topic, "webhook_id": delivery.webhook_id}


async def uninstall_shop(ctx: dict[str, Any], arg: dict[str, Any]) -> Any:
    delivery = Delivery.from_arg(arg)
    return await run_job(
        ctx,
        "uninstall_shop",
        _uninstall_shop,
        (delivery,),
        queue=ctx["app"].keys.realtime_queue,
        timeout_s=REALTIME_TIMEOUT_S,
        bind=_delivery_bind(delivery),
    )


async def _uninstall_shop(app: WorkerContext, delivery: Delivery) -> dict[str, Any]:
    """`app/uninstalled`: stop syncing the shop (its later webhooks and syncs are skipped)."""
    await typed(app.redis.sadd(app.keys.uninstalled, delivery.shop))
    return {"uninstalled": delivery.shop}


def realtime_functions() -> list[Any]:
    return [uninstall_shop]


def fullsync_functions() -> list[Any]:
    return []


def realtime_cron_jobs(installations: Installations) -> list[CronJob]:
    return []
