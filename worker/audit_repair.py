"""The drift audit's repair: ordinary sync jobs for the customers that differ.

- Missing profile, differing attributes or consents: under the customer's lock, the sync state
  forgets the records of what APSIS turned out not to hold (`mappings.audit.forget_written`),
  then the customer as the audit read it from Shopify is deposited and its apply job scheduled
  (`worker.coalesce.deposit`, as a webhook behind a backlog does). The ordinary apply plans and
  sends the writes: newer data still wins (a webhook newer than the audit's read overtakes it),
  and every opt-in passes the opt-in guard (`worker.sync_consents.guard_consents`): a repair
  never opts anyone in whom Shopify does not show subscribed, and an opt-out given in APSIS since
  stays. A customer with writes staged by an unfinished apply is left to that apply.
- Deleted in Shopify, profile still in APSIS: the `delete_customer` job a `customers/delete`
  webhook enqueues (the profile goes, a tombstone stays).
- In no section's conditions, profile still in APSIS: the `audit_remove_profile` job below. It
  reads the customer again under the lock and deletes the profile only if the customer still
  meets no section's conditions; the state then remembers nothing written, so a customer who
  meets the conditions again is synced in full (no tombstone: the customer still exists).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from core.jobs import Delivery
from mappings.audit import Difference, forget_written
from mappings.installation import Shop
from mappings.normalize import normalize_customer
from mappings.plan import plan_sync
from worker import coalesce, realtime_lag
from worker.audit import Audit
from worker.context import WorkerContext
from worker.runtime import TransientError, run_job
from worker.sync_consents import address_attributes
from worker.sync_update import Update

log = structlog.get_logger("worker.audit")

REMOVE_JOB = "audit_remove_profile"
REMOVE_TIMEOUT_S = 30
LOCK_WAIT_S = 10.0


async def repair(app: WorkerContext, shop: Shop, audit: Audit) -> dict[str, int]:
    """Enqueue the fixes of every differing customer; counts per kind of job enqueued."""
    done = {"resync": 0, "delete": 0, "remove": 0}
    for cid, (differences, customer) in sorted(audit.drifted.items()):
        kind = await repair_one(app, shop, cid, differences, customer)
        if kind is not None:
            done[kind] += 1
    log.info("audit_repair_enqueued", shop=shop.domain, **done)
    return done


async def repair_one(
    app: WorkerContext,
    shop: Shop,
    cid: int,
    differences: list[Difference],
    customer: Mapping[str, Any] | None,
) -> str | None:
    """Enqueue the fix of one differing customer (see the module docstring); the kind of job."""
    extra = next((d for d in differences if d.kind == "extra"), None)
    if extra is not None and extra.detail == "deleted":
        await _enqueue_delete(app, shop, cid)
        return "delete"
    if extra is not None:
        await app.redis.enqueue_job(
            REMOVE_JOB,
            {"shop": shop.domain, "customer_id": cid},
            _queue_name=app.keys.realtime_queue,
            _job_id=f"audit-remove-{shop.domain}-{cid}-{time.time_ns()}",
        )
        return "remove"
    if customer is not None:
        await _resync(app, shop, cid, differences, customer)
        return "resync"
    return None


async def _resync(
    app: WorkerContext, shop: Shop, cid: int, differences: list[Difference], customer: Mapping[str, Any]
) -> None:
    await _forget(app, shop, cid, differences)
    update = Update(kind="rest", payload=dict(customer), received_at=time.time(), source="resync")
    # A lag over BEHIND_S schedules the customer's apply job (or joins the one waiting).
    scheduled = await coalesce.deposit(
        app, shop.domain, cid, f"audit:{time.time_ns()}", update.to_dict(), realtime_lag.BEHIND_S + 0.5
    )
    assert scheduled is not None


async def _forget(app: WorkerContext, shop: Shop, cid: int, differences: list[Difference]) -> None:
    store = app.customers
    token = await _lock(app, shop, cid)
    try:
        stored = await store.load(shop.domain, cid)
        if stored.state is None or stored.staged is not None:
            return  # nothing remembered (a first sync writes everything), or an apply resends
        state = forget_written(stored.state, differences)
        await store.settle(shop.domain, cid, token, [], state, stored.marks)
    finally:
        await store.unlock(shop.domain, cid, token)


async def _lock(app: WorkerContext, shop: Shop, cid: int) -> str:
    token = await app.customers.lock_within(shop.domain, cid, LOCK_WAIT_S)
    if token is None:
        raise TransientError(f"customer {cid} busy")
    return token


async def _enqueue_delete(app: WorkerContext, shop: Shop, cid: int) -> None:
    delivery = Delivery(
        topic="customers/delete",
        shop=shop.domain,
        webhook_id=f"audit-{cid}-{time.time_ns()}",
        event_id=None,
        triggered_at=None,
        api_version=None,
        received_at=time.time(),
        body=orjson.dumps({"id": cid}).decode(),
    )
    await app.redis.enqueue_job(
        "delete_customer",
        delivery.to_arg(),
        _queue_name=app.keys.realtime_queue,
        _job_id=f"audit-delete-{os.urandom(6).hex()}",
    )


async def audit_remove_profile(ctx: dict[str, Any], arg: dict[str, Any]) -> Any:
    """The job: delete the profile of a customer who meets no section's conditions (see above)."""

    async def run(app: WorkerContext, arg: dict[str, Any]) -> Any:
        shop = app.installations.get(arg["shop"])
        if shop is None:
            return {"skipped": "unknown shop"}
        return await remove_profile(app, shop, int(arg["customer_id"]))

    return await run_job(
        ctx,
        REMOVE_JOB,
        run,
        (arg,),
        queue=ctx["app"].keys.realtime_queue,
        timeout_s=REMOVE_TIMEOUT_S,
        bind={"shop": arg.get("shop"), "customer_id": arg.get("customer_id")},
    )


async def remove_profile(app: WorkerContext, shop: Shop, cid: int) -> dict[str, Any]:
    store = app.customers
    token = await _lock(app, shop, cid)
    try:
        customer = await app.shopify(shop).get_customer(cid)
        if customer is None:
            return {"skipped": "deleted in Shopify (the delete job removes it)"}
        stored = await store.load(shop.domain, cid)
        if stored.staged is not None:
            raise TransientError(f"customer {cid}: an unfinished apply is resent first")
        addresses = await address_attributes(app, shop)
        plan = plan_sync(shop, stored.state, normalize_customer(customer), address_attributes=addresses)
        if stored.deleted_at is not None or plan.stale or plan.state is None or plan.state.sections:
            return {"skipped": "meets a section's conditions again, or changed since"}
        existed = await app.apsis(shop).delete_profile(shop.apsis.keyspace, str(cid))
        state = dataclasses.replace(plan.state, attributes={}, consents={})
        await store.settle(shop.domain, cid, token, [], state, stored.marks)
        log.info("audit_profile_removed", customer_id=cid, existed=existed)
        return {"removed": cid, "existed": existed}
    finally:
        await store.unlock(shop.domain, cid, token)
