"""The drift audit's walk: Shopify's customers -> what APSIS must hold -> what it holds -> report.

`run_audit` walks the store's customers a chunk at a time, plans each as a fresh sync would
(`mappings.plan.plan_sync` with no state) and compares it with what APSIS holds through the pure
`mappings.audit.compare`.

The store: a shop whose full sync reads a bulk export (`[shop.sync] bulk_export`) is audited from
one too (`ShopifyClient.iter_bulk_customers`): it takes one of the shop's bulk slots, leased by
the whole pool (`worker.shopify_bulk_slots`), so it runs beside a full sync's export where the
shop's API version allows several at once (2026-01 on) and waits for it where it does not.
Otherwise GraphQL pages (`worker.fullsync.source.customer_page`, the full sync's page read and
its cost bucket).

APSIS (`apsis_read`): `reports` stages APSIS's consent report exports in Redis first and reads
per profile only what they cannot answer (`worker.audit_apsis_bulk`); `profiles` reads each
customer's attributes and consents per profile (`worker.audit_read`); `auto` (the default) takes
reports for a bulk-export shop or one with `REPORTS_FROM` synced customers or more, where a
handful of export requests replace two requests per customer.

After the walk, the customers it did not see although the sync state knows them
(`Keys.shop_customers`) or APSIS holds their profile (a staged report's rows) are looked up in
Shopify: deleted there (a delete webhook lost) they count `extra` when APSIS still has them;
created since, they are compared like the rest. The walk's ids wait in a Redis set, so memory
stays a chunk's worth at any size of store.

Every APSIS read draws from the shared rate limiter, so the audit stays inside APSIS's limits
whatever else the pool does, and slows down instead of causing 429s. The report is counts and
the first N examples by customer id (never an address); the last result is kept in Redis
(`Keys.audit`) for `shopsync status`, `/admin/status` and `/metrics`. A repair either takes the
differing customers at the end (`Audit.drifted`, `worker.audit_repair.repair`) or each as it is
found (`on_drift`, for a scheduled audit: nothing held in memory).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson
import structlog

from core.redis_conn import typed
from mappings.audit import Difference, Held, Report, compare
from mappings.installation import Shop
from mappings.normalize import normalize_customer
from mappings.plan import AddressAttributes, plan_sync
from mappings.snapshot import PayloadError
from mappings.state import SyncState
from worker.audit_apsis_bulk import ReportReads
from worker.audit_read import ProfileReads
from worker.context import WorkerContext
from worker.fullsync.source import compact, customer_fields, customer_page
from worker.shopify_shapes import rest_customer
from worker.sync_consents import address_attributes

log = structlog.get_logger("worker.audit")

RESULT_TTL_S = 90 * 24 * 3600
BULK_SLOT_WAIT_S = 30 * 60  # a bulk audit waits this long for a bulk slot (a full sync's export)
BULK_CHUNK = 250  # bulk lines compared together
REPORTS_FROM = 1000  # synced customers from which `auto` reads APSIS through reports
RUN_TTL_S = 24 * 3600

Json = dict[str, Any]
ApsisRead = Literal["auto", "reports", "profiles"]
OnDrift = Callable[[int, list[Difference], Json | None], Awaitable[None]]


class Reads(Protocol):
    name: str

    async def held(self, items: list[tuple[int, SyncState | None]]) -> list[Held | None]: ...
    async def exists(self, customer_id: int) -> bool: ...
    def known_keys(self) -> list[str]: ...
    async def close(self) -> None: ...


@dataclass
class Audit:
    """A finished walk: the report, and per differing customer its differences and the customer
    as Shopify gave it (None: deleted in Shopify), for a repair."""

    report: Report
    drifted: dict[int, tuple[list[Difference], Json | None]] = field(default_factory=dict)
    skipped: int = 0  # customers whose payload the mappings could not read
    apsis_read: str = "profiles"
    per_profile: int = 0  # with reports: customers some of whose data was read per profile


async def run_audit(
    app: WorkerContext,
    shop: Shop,
    *,
    examples: int = 10,
    apsis_read: ApsisRead = "auto",
    on_drift: OnDrift | None = None,
) -> Audit:
    """Walk every customer of the store and compare APSIS with it (see the module docstring)."""
    audit = Audit(Report(limit=examples))
    walk = _Walk(app, shop, audit, await address_attributes(app, shop), uuid.uuid4().hex[:12], on_drift)
    if apsis_read == "auto":
        synced = await typed(app.redis.scard(app.keys.shop_customers(shop.domain)))
        apsis_read = "reports" if shop.sync.bulk_export or synced >= REPORTS_FROM else "profiles"
    reads: Reads = ProfileReads(app, shop)
    # The reports are built and staged while Shopify builds its export (or the first page waits).
    staging = (
        asyncio.create_task(ReportReads.stage(app, shop, walk.run, walk.addresses))
        if apsis_read == "reports"
        else None
    )
    try:
        async for chunk in _chunks(app, shop):
            if staging is not None and reads.name != "reports":
                reads = await staging
            await walk.compare(reads, chunk)
        if staging is not None and reads.name != "reports":
            reads = await staging
        audit.apsis_read = reads.name
        await walk.leftovers(reads)
    finally:
        if staging is not None and not staging.done():
            staging.cancel()
            await asyncio.gather(staging, return_exceptions=True)
        elif staging is not None and not staging.cancelled() and staging.exception() is None:
            reads = staging.result()
        await reads.close()
        await typed(app.redis.unlink(*walk.run_keys))  # sized by the store: freed aside
    audit.per_profile = getattr(reads, "per_profile", 0)
    log.info(
        "audit_done",
        shop=shop.domain,
        customers=audit.report.customers,
        apsis_read=audit.apsis_read,
        **audit.report.counts,
    )
    return audit


async def _chunks(app: WorkerContext, shop: Shop) -> AsyncIterator[list[Json]]:
    client = app.shopify(shop)
    fields = customer_fields(shop)
    if shop.sync.bulk_export:
        chunk: list[Json] = []
        async for line in client.iter_bulk_customers(slot_wait_s=BULK_SLOT_WAIT_S):
            if "__parentId" not in line:
                chunk.append(compact(rest_customer(line), fields))
            if len(chunk) >= BULK_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    cursor: str | None = None
    while True:
        page, cursor = await customer_page(client, cursor, updated_at_min=None, fields=fields)
        yield page
        if cursor is None:
            return


@dataclass
class _Walk:
    app: WorkerContext
    shop: Shop
    audit: Audit
    addresses: AddressAttributes
    run: str
    on_drift: OnDrift | None

    @property
    def seen_key(self) -> str:
        return self.app.keys.audit_seen(self.shop.domain, self.run)

    @property
    def run_keys(self) -> list[str]:
        keys = self.app.keys
        return [self.seen_key, keys.audit_left(self.shop.domain, self.run)]

    async def compare(self, reads: Reads, chunk: list[Json]) -> None:
        items: list[tuple[int, SyncState | None, Json]] = []
        for customer in chunk:
            try:
                snapshot = normalize_customer(customer)
            except PayloadError as exc:
                self.audit.skipped += 1
                log.warning("audit_customer_unreadable", error=str(exc))
                continue
            expected = plan_sync(self.shop, None, snapshot, address_attributes=self.addresses).state
            items.append((snapshot.id, expected, customer))
        if not items:
            return
        async with self.app.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self.seen_key, *(cid for cid, _, _ in items))
            pipe.expire(self.seen_key, RUN_TTL_S)
            await pipe.execute()
        helds = await reads.held([(cid, expected) for cid, expected, _ in items])
        for (cid, expected, customer), held in zip(items, helds, strict=True):
            self.audit.report.customers += 1
            if held is not None:
                await self.record(compare(self.shop, cid, expected, held, self.addresses), customer)

    async def record(self, differences: list[Difference], customer: Json | None) -> None:
        self.audit.report.add(differences)
        if not differences:
            return
        if self.on_drift is not None:
            await self.on_drift(differences[0].customer_id, differences, customer)
        else:
            self.audit.drifted[differences[0].customer_id] = (differences, customer)

    async def leftovers(self, reads: Reads) -> None:
        """Customers the sync state or APSIS knows that the walk did not see."""
        redis, left = self.app.redis, self.app.keys.audit_left(self.shop.domain, self.run)
        sources: list[AsyncIterator[Any]] = [
            redis.sscan_iter(self.app.keys.shop_customers(self.shop.domain), count=1000),
            *(redis.hscan_iter(key, count=1000) for key in reads.known_keys()),
        ]
        for source in sources:
            batch: list[Any] = []
            async for member in source:
                batch.append(member[0] if isinstance(member, tuple) else member)
                if len(batch) >= 1000:
                    await self._note_unseen(batch, left)
                    batch = []
            await self._note_unseen(batch, left)
        client = self.app.shopify(self.shop)
        async for member in redis.sscan_iter(left, count=1000):
            cid = int(member)
            customer = await client.get_customer(cid)
            if customer is not None:  # created since the walk read its page
                await self.compare(reads, [customer])
                continue
            self.audit.report.customers += 1
            held = Held(exists=await reads.exists(cid))
            await self.record(compare(self.shop, cid, None, held, self.addresses), None)

    async def _note_unseen(self, batch: list[Any], left: str) -> None:
        if not batch:
            return
        flags = await typed(self.app.redis.smismember(self.seen_key, batch))
        unseen = [m for m, f in zip(batch, flags, strict=True) if not f and str(_text(m)).isdigit()]
        if unseen:
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(left, *unseen)
                pipe.expire(left, RUN_TTL_S)
                await pipe.execute()


def _text(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)


# --- the last result, for status, /admin/status and /metrics ---------------------------------


async def save_result(app: WorkerContext, shop: Shop, audit: Audit, repaired: Mapping[str, int]) -> Json:
    """Keep the audit's counts (no examples) and time under `Keys.audit`."""
    report = audit.report
    result: Json = {
        "at": time.time(),
        "customers": report.customers,
        **report.counts,
        "old_address": report.old_address,
        "apsis_read": audit.apsis_read,
        "differing_customers": len(audit.drifted),
        "repaired": dict(repaired),
    }
    await typed(app.redis.set(app.keys.audit(shop.domain), orjson.dumps(result), ex=RESULT_TTL_S))
    return result
