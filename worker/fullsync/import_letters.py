"""Sending customers of an import full sync through the per-profile path, now or as dead letters.

`resend` re-sends customers one profile at a time from Shopify's current state: under each
customer's lock the sync state forgets what it recorded as written (`mappings.audit.forget_written`),
so the ordinary apply (`worker.sync.submit`, forced) writes every attribute and consent again,
through the opt-in guard and the `updated_at` ordering. Used for the profiles an import did not
write as expected, those a webhook wrote while the import ran, and by the dead letters below.

Dead letters: a row refused before upload (a malformed email or phone, a value too long) is one
letter per customer with the reason; a file whose import failed on every try is one letter with
its customers. Both replay as `full_sync_import_resend` jobs (this module's job), which re-send
the customers from Shopify's current state (once the merchant fixed the address, say).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from core.keys import Keys
from mappings.audit import Difference, forget_written
from mappings.import_rows import Routed
from mappings.installation import Shop
from worker.context import WorkerContext
from worker.deadletters import DeadLetter
from worker.runtime import TransientError, run_job
from worker.sync import submit
from worker.sync_update import Update

log = structlog.get_logger("worker.fullsync")

RESEND_FUNCTION = "full_sync_import_resend"
# A replay re-sends at most RESEND_CHUNK customers (a full-sync batch's size), each a Shopify read
# and its APSIS writes, 16 at a time: like a batch, well within the full-sync job budget.
RESEND_CHUNK = 250
RESEND_TIMEOUT_S = 300.0
RESEND_CONCURRENCY = 16
LOCK_WAIT_S = 10.0


def refused_letter(app: WorkerContext, shop: Shop, sync_id: str, routed: Routed) -> DeadLetter:
    log.warning(
        "full_sync_import_row_refused", sync_id=sync_id, customer_id=routed.customer_id, reason=routed.reason
    )
    return _letter(
        app, shop, f"import-refused:{sync_id}:{routed.customer_id}", [routed.customer_id], routed.reason
    )


def failed_file_letters(
    app: WorkerContext, shop: Shop, sync_id: str, number: int, customer_ids: list[int], error: str
) -> list[DeadLetter]:
    """A failed file's customers, `RESEND_CHUNK` a letter: each replay job re-sends one chunk per
    profile within the full-sync job budget (a whole file is up to 25,000 customers)."""
    return [
        _letter(
            app,
            shop,
            f"import-failed:{sync_id}:{number}:{start // RESEND_CHUNK}",
            customer_ids[start : start + RESEND_CHUNK],
            f"import failed: {error}",
        )
        for start in range(0, len(customer_ids), RESEND_CHUNK)
    ]


def _letter(app: WorkerContext, shop: Shop, job_id: str, cids: list[int], reason: str) -> DeadLetter:
    return DeadLetter(
        job_id=job_id,
        function=RESEND_FUNCTION,
        args=[shop.domain, cids],
        kwargs={},
        queue=app.keys.fullsync_queue,
        tries=1,
        error_type="ImportRefused" if job_id.startswith("import-refused") else "ImportFailed",
        error=reason,
        failed_at=time.time(),
    )


def bury_in(pipe: Any, keys: Keys, letter: DeadLetter) -> None:
    """`worker.deadletters.bury`, inside the caller's transaction."""
    pipe.hset(keys.dead_letters, letter.job_id, letter.to_json().decode())
    pipe.zadd(keys.dead_letter_index, {letter.job_id: letter.failed_at})
    pipe.hincrby(keys.counters, "dead_letters", 1)


async def full_sync_import_resend(ctx: dict[str, Any], shop: str, customer_ids: list[int]) -> Any:
    async def body(app: WorkerContext, shop_domain: str, cids: list[int]) -> dict[str, Any]:
        found = app.installations.get(shop_domain)
        if found is None:
            return {"skipped": "shop not in the installations file"}
        failed = await resend(app, found, cids, "replayed")
        if failed:
            raise TransientError(f"{len(failed)} customer(s) not re-sent: {failed[0][1]}")
        return {"resent": len(cids)}

    return await run_job(
        ctx,
        RESEND_FUNCTION,
        body,
        (shop, customer_ids),
        queue=ctx["app"].keys.fullsync_queue,
        timeout_s=RESEND_TIMEOUT_S,
        bind={"shop": shop},
    )


async def resend(app: WorkerContext, shop: Shop, cids: list[int], reason: str) -> list[tuple[int, str]]:
    """Re-send each customer per profile from Shopify's current state; the ones that failed."""
    semaphore = asyncio.Semaphore(RESEND_CONCURRENCY)
    failed: list[tuple[int, str]] = []

    async def one(cid: int) -> None:
        async with semaphore:
            try:
                await resend_one(app, shop, cid)
            except Exception as exc:
                failed.append((cid, f"{type(exc).__name__}: {exc}"))

    await asyncio.gather(*(one(cid) for cid in cids))
    if cids:
        log.info(
            "full_sync_import_resent",
            shop=shop.domain,
            customers=len(cids),
            failed=len(failed),
            reason=reason,
        )
    return failed


async def resend_one(app: WorkerContext, shop: Shop, cid: int) -> None:
    customer = await app.shopify(shop).get_customer(cid)
    if customer is None:
        return  # deleted in Shopify meanwhile: its delete webhook removes the profile
    await forget(app, shop, cid)
    update = Update(
        kind="rest", payload=dict(customer), received_at=time.time(), source="fullsync", force=True
    )
    await submit(app, shop, f"import-resend:{cid}:{time.time_ns()}", update)


async def forget(app: WorkerContext, shop: Shop, cid: int) -> None:
    """The state without its written records: the next apply writes everything again."""
    store = app.customers
    token = await store.lock_within(shop.domain, cid, LOCK_WAIT_S)
    if token is None:
        raise TransientError(f"customer {cid} busy")
    try:
        stored = await store.load(shop.domain, cid)
        if stored.state is None or stored.staged is not None:
            return
        state = forget_written(stored.state, [Difference(cid, "missing")])
        await store.settle(shop.domain, cid, token, [], state, stored.marks)
    finally:
        await store.unlock(shop.domain, cid, token)
