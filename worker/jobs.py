"""The arq job functions, one per topic family (see `core.jobs.TOPIC_JOBS`), and the lists
each queue's worker registers. Bodies are small: decode the delivery, find the installation,
hand over to `worker.sync` (customers) or the other modules; `worker.runtime.run_job` applies
the failure policy around each.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from arq.cron import CronJob

from core.jobs import Delivery
from core.redis_conn import typed
from mappings.installation import Installations, Shop
from mappings.normalize import customer_id as payload_customer_id
from mappings.snapshot import PayloadError
from worker import coalesce, fullsync, orders
from worker.audit_repair import audit_remove_profile
from worker.context import WorkerContext
from worker.install import install_shop
from worker.runtime import JOB_TRY, run_job
from worker.sync import delete_customer as delete_profile
from worker.sync import submit
from worker.sync_update import Update, customer_of

# A real-time job's budget (run_job's timeout; past it, a Retry and its updates stay pending):
# up to worker.sync.DRIVE_BUDGET_S (20 s) waiting for a customer another worker is applying, then
# its own apply (under a second normally, a few seconds under APSIS errors). Waits for a rate-limit
# slot or a Retry-After are cut to what the budget has left (worker/budget.py): a backlog ends the
# job in a Retry, not in a request cut off halfway. It also bounds how long a SIGKILLed worker's
# jobs wait before other workers re-run them (worker/main.py).
REALTIME_TIMEOUT_S = 30
log = structlog.get_logger("worker.jobs")


class UnknownShopError(Exception):
    """A job for a shop that is not in the installations file (permanent)."""


def _delivery_job(
    name: str,
    body: Callable[[WorkerContext, Shop, Delivery], Awaitable[Any]],
    *,
    body_checks_installed: bool = False,
) -> Callable[[dict[str, Any], dict[str, Any]], Awaitable[Any]]:
    """An arq function for webhook deliveries: decode, resolve the shop, skip uninstalled shops
    (`body_checks_installed`: the body does, in its first round trip)."""

    async def job(ctx: dict[str, Any], arg: dict[str, Any]) -> Any:
        delivery = Delivery.from_arg(arg)
        # Late: its wait on the queue since it was due (arq's score: the receiver's enqueue, or
        # the release of a job parked while its shop backed off, which did not wait in a backlog).
        due_ms = ctx.get("score")
        due = int(due_ms) / 1000 if due_ms else delivery.received_at
        await ctx["app"].realtime_lag.started(due, ctx.get("job_try", 1))

        async def run(app: WorkerContext, delivery: Delivery) -> Any:
            shop = app.installations.get(delivery.shop)
            if shop is None:
                raise UnknownShopError(f"shop {delivery.shop!r} is not in {app.installations.source}")
            checked_here = delivery.topic != "app/uninstalled" and not body_checks_installed
            if checked_here and await _uninstalled(app, shop):
                return _skipped_uninstalled()
            return await body(app, shop, delivery)

        return await run_job(
            ctx,
            name,
            run,
            (delivery,),
            queue=ctx["app"].keys.realtime_queue,
            timeout_s=REALTIME_TIMEOUT_S,
            bind={"shop": delivery.shop, "topic": delivery.topic, "webhook_id": delivery.webhook_id},
        )

    job.__qualname__ = job.__name__ = name
    return job


async def _sync_topic(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    """Customer, consent and tags topics: one update of the customer, applied in order."""
    try:
        update, customer_id = _topic_update(delivery)  # a poison payload fails here, before Redis
    except PayloadError:
        if await _uninstalled(app, shop):  # as for any topic: an uninstalled shop's are skipped
            return _skipped_uninstalled()
        raise
    update_id = f"wh:{delivery.webhook_id}"
    # Behind, or an apply already scheduled for the customer: deposit only (worker/coalesce.py).
    # A job arq runs again (its worker was killed, or it asked for a Retry) waited for that, not
    # behind a backlog: its own wait does not count (a backlog of applies still does).
    lag_s = time.time() - delivery.received_at if JOB_TRY.get() == 1 else 0.0
    deposited = await coalesce.deposit_webhook(app, shop, customer_id, update_id, update.to_dict(), lag_s)
    if deposited.uninstalled:
        log.info("skipped_uninstalled_shop")
        return _skipped_uninstalled()
    if deposited.scheduled is not None:
        app.metrics.inc("shopsync_customers_total", {"source": "webhook", "outcome": "deferred"})
        return {"outcome": "deferred", "apply_job": deposited.scheduled.job_id}
    outcome = await submit(app, shop, update_id, update, deposited=True, locked=deposited.locked)
    app.metrics.inc("shopsync_customers_total", {"source": "webhook", "outcome": outcome})
    if outcome == "written":
        app.metrics.observe("shopsync_webhook_to_write_seconds", time.time() - delivery.received_at)
    return {"outcome": outcome}


def _topic_update(delivery: Delivery) -> tuple[Update, int]:
    payload = delivery.payload()
    if not isinstance(payload, dict):
        raise PayloadError("(body)", "a customer payload must be a JSON object")
    update = Update(
        kind="topic",
        topic=delivery.topic,
        payload=payload,
        received_at=delivery.received_at,
        triggered_at=_epoch(delivery.triggered_at),
    )
    return update, customer_of(update.normalized())


async def apply_customer(ctx: dict[str, Any], arg: dict[str, Any]) -> Any:
    """The one deferred job that applies a customer's queued updates together (worker/coalesce.py)."""
    job_id = str(ctx.get("job_id", ""))

    async def run(app: WorkerContext, arg: dict[str, Any]) -> Any:
        shop = app.installations.get(arg["shop"])
        if shop is None:
            raise UnknownShopError(f"shop {arg['shop']!r} is not in {app.installations.source}")
        if await _uninstalled(app, shop):
            return _skipped_uninstalled()
        return await coalesce.apply_customer(app, shop, int(arg["customer_id"]), job_id)

    return await run_job(
        ctx,
        coalesce.APPLY_JOB,
        run,
        (arg,),
        queue=ctx["app"].keys.apply_queue,
        timeout_s=REALTIME_TIMEOUT_S,
        bind={"shop": arg.get("shop"), "customer_id": arg.get("customer_id")},
    )


def _skipped_uninstalled() -> dict[str, Any]:
    return {"skipped": "shop uninstalled"}


async def _uninstalled(app: WorkerContext, shop: Shop) -> bool:
    if await typed(app.redis.sismember(app.keys.uninstalled, shop.domain)):
        log.info("skipped_uninstalled_shop")
        return True
    return False


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _delete(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    cid = payload_customer_id(delivery.payload())
    existed = await delete_profile(app, shop, cid, deleted_at=delivery.received_at)
    app.metrics.inc("shopsync_customers_total", {"source": "webhook", "outcome": "deleted"})
    return {"deleted": cid, "existed": existed}


async def _privacy(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    payload = delivery.payload()
    if delivery.topic == "customers/redact":
        cid = payload_customer_id(payload)
        existed = await delete_profile(app, shop, cid, deleted_at=delivery.received_at)
        log.info("customer_redacted", customer_id=cid, profile_existed=existed)
        return {"redacted": cid}
    if delivery.topic == "customers/data_request":
        # APSIS holds the profile itself; what this service holds is the sync state.
        cid = payload_customer_id(payload)
        stored = await app.customers.load(shop.domain, cid)
        state, deleted_at = stored.state, stored.deleted_at
        held = {
            "customer_id": cid,
            "state_key": app.keys.customer_state(shop.domain, cid),
            "fields_held": sorted(state.fields) if state else [],
            "sections": list(state.sections) if state else [],
            "deleted_at": deleted_at,
        }
        log.info("customer_data_request", **held)
        return held
    # shop/redact: forget the shop entirely, its order marks and cached products too.
    forgotten = await _forget_shop(app, shop)
    forgotten["order_keys_removed"] = await orders.forget_shop_orders(app, shop.domain)
    return forgotten


async def _uninstall(app: WorkerContext, shop: Shop, delivery: Delivery) -> dict[str, Any]:
    return await _forget_shop(app, shop)


async def _forget_shop(app: WorkerContext, shop: Shop) -> dict[str, Any]:
    """Stop syncing the shop and remove its state (APSIS profiles stay: they are the merchant's)."""
    await typed(app.redis.sadd(app.keys.uninstalled, shop.domain))
    removed = await app.customers.forget_shop(shop.domain)
    log.info("shop_forgotten", customers_removed=removed)
    return {"uninstalled": shop.domain, "customers_removed": removed}


sync_customer = _delivery_job("sync_customer", _sync_topic, body_checks_installed=True)
sync_consent = _delivery_job("sync_consent", _sync_topic, body_checks_installed=True)
sync_tags = _delivery_job("sync_tags", _sync_topic, body_checks_installed=True)
delete_customer = _delivery_job("delete_customer", _delete)
privacy_request = _delivery_job("privacy_request", _privacy)
uninstall_shop = _delivery_job("uninstall_shop", _uninstall)
record_order = _delivery_job("record_order", orders.record_order)
refresh_product = _delivery_job("refresh_product", orders.refresh_product)


def realtime_functions() -> list[Any]:
    return [
        sync_customer,
        sync_consent,
        sync_tags,
        delete_customer,
        privacy_request,
        uninstall_shop,
        record_order,
        refresh_product,
        install_shop,
        audit_remove_profile,
    ]


def apply_functions() -> list[Any]:
    """The apply queue's (worker/coalesce.py), run by every real-time worker process."""
    return [apply_customer]


def fullsync_functions() -> list[Any]:
    return [*fullsync.functions()]


def realtime_cron_jobs(installations: Installations) -> list[CronJob]:
    # Full-sync supervision and reconciliation run on the real-time worker: small, periodic.
    return [*fullsync.cron_jobs(installations)]
