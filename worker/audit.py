"""The drift audit's walk: Shopify's customers -> what APSIS must hold -> what it holds -> report.

`run_audit` walks the store's customers a page at a time (`worker.fullsync.source.customer_page`,
the full sync's own page read and its cost bucket), plans each as a fresh sync would
(`mappings.plan.plan_sync` with no state) and reads what APSIS holds, then compares through the
pure `mappings.audit.compare`:

- a customer in some section: per section it belongs in, `GET .../attributes` (a 404 is a
  missing profile) and, when the section maps consent, `GET /v2/.../consents`;
- a customer in no section, and a customer the service once synced (`Keys.shop_customers`) that
  the walk did not see and Shopify no longer has: one `GET .../attributes` tells whether APSIS
  still holds a profile (only customers with a sync state are asked: a customer never synced has
  no profile from us).

A shop whose full sync reads a bulk export (`[shop.sync] bulk_export`) is audited from one too
(`ShopifyClient.iter_bulk_customers`): it takes one of the shop's bulk slots, leased by the whole
pool (`worker.shopify_bulk_slots`), so it runs beside a full sync's export where the shop's API
version allows several at once (2026-01 on) and waits for it where it does not.

Every APSIS read draws from the shared rate limiter (`ApsisClient`), at most `CONCURRENCY`
customers at once: the audit stays inside APSIS's 100 requests/s per account and 10/s per
profile whatever else the pool does, and slows down instead of causing 429s. The report is
counts and the first N examples by customer id (never an address); the last result is kept in
Redis (`Keys.audit`) for `shopsync status`, `/admin/status` and `/metrics`. `--repair` hands the
differing customers to `worker.audit_repair`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from core.redis_conn import typed
from mappings.audit import Difference, Held, Report, compare
from mappings.consent import ApsisConsent
from mappings.installation import Shop
from mappings.normalize import normalize_customer
from mappings.plan import AddressAttributes, plan_sync
from mappings.snapshot import PayloadError
from mappings.state import SyncState
from worker.apsis_client import CONSENT_SOURCE
from worker.context import WorkerContext
from worker.fullsync.source import compact, customer_fields, customer_page
from worker.shopify_shapes import rest_customer
from worker.sync_consents import address_attributes

log = structlog.get_logger("worker.audit")

CONCURRENCY = 8  # customers read from APSIS at once (each read still waits for the limiter)
RESULT_TTL_S = 90 * 24 * 3600
BULK_SLOT_WAIT_S = 30 * 60  # a bulk audit waits this long for a bulk slot (a full sync's export)
BULK_CHUNK = 250  # bulk lines compared together

Json = dict[str, Any]


@dataclass
class Audit:
    """A finished walk: the report, and per differing customer its differences and the customer
    as Shopify gave it (None: deleted in Shopify), for a repair."""

    report: Report
    drifted: dict[int, tuple[list[Difference], Json | None]] = field(default_factory=dict)
    skipped: int = 0  # customers whose payload the mappings could not read


async def run_audit(app: WorkerContext, shop: Shop, *, examples: int = 10) -> Audit:
    """Walk every customer of the store and compare APSIS with it (see the module docstring)."""
    audit = Audit(Report(limit=examples))
    addresses = await address_attributes(app, shop)
    client = app.shopify(shop)
    fields = customer_fields(shop)
    seen: set[int] = set()
    gate = asyncio.Semaphore(CONCURRENCY)
    if shop.sync.bulk_export:
        chunk: list[Json] = []
        async for line in client.iter_bulk_customers(slot_wait_s=BULK_SLOT_WAIT_S):
            if "__parentId" not in line:
                chunk.append(compact(rest_customer(line), fields))
            if len(chunk) >= BULK_CHUNK:
                await asyncio.gather(*(_one(app, shop, audit, addresses, c, gate, seen) for c in chunk))
                chunk = []
        await asyncio.gather(*(_one(app, shop, audit, addresses, c, gate, seen) for c in chunk))
    cursor: str | None = None
    while not shop.sync.bulk_export:
        page, cursor = await customer_page(client, cursor, updated_at_min=None, fields=fields)
        await asyncio.gather(*(_one(app, shop, audit, addresses, c, gate, seen) for c in page))
        if cursor is None:
            break
    # Synced once, not in the walk: deleted in Shopify (a delete webhook lost), or created since.
    async for member in app.redis.sscan_iter(app.keys.shop_customers(shop.domain), count=1000):
        cid = int(member)
        if cid in seen:
            continue
        customer = await client.get_customer(cid)
        if customer is not None:
            await _one(app, shop, audit, addresses, customer, gate, seen)
            continue
        held = Held(exists=await _profile_exists(app, shop, cid))
        audit.report.customers += 1
        _record(audit, compare(shop, cid, None, held), None)
    log.info("audit_done", shop=shop.domain, customers=audit.report.customers, **audit.report.counts)
    return audit


async def _one(
    app: WorkerContext,
    shop: Shop,
    audit: Audit,
    addresses: AddressAttributes,
    customer: Json,
    gate: asyncio.Semaphore,
    seen: set[int],
) -> None:
    try:
        snapshot = normalize_customer(customer)
    except PayloadError as exc:
        audit.skipped += 1
        log.warning("audit_customer_unreadable", error=str(exc))
        return
    seen.add(snapshot.id)
    expected = plan_sync(shop, None, snapshot, address_attributes=addresses).state
    async with gate:
        held = await read_held(app, shop, snapshot.id, expected)
    audit.report.customers += 1
    if held is not None:
        _record(audit, compare(shop, snapshot.id, expected, held), customer)


def _record(audit: Audit, differences: list[Difference], customer: Json | None) -> None:
    audit.report.add(differences)
    if differences:
        audit.drifted[differences[0].customer_id] = (differences, customer)


async def read_held(
    app: WorkerContext, shop: Shop, customer_id: int, expected: SyncState | None
) -> Held | None:
    """What APSIS holds of the customer, read only where the comparison needs it; None: nothing
    to compare (a customer in no section who was never synced)."""
    if expected is None or not expected.sections:
        stored = await app.customers.load(shop.domain, customer_id)
        if stored.state is None:
            return None
        return Held(exists=await _profile_exists(app, shop, customer_id))
    apsis = app.apsis(shop)
    keyspace, key = shop.apsis.keyspace, str(customer_id)
    attributes: dict[str, Mapping[str, Any]] = {}
    consents: dict[str, dict[tuple[str, str], ApsisConsent]] = {}
    for section in shop.sections:
        s = section.discriminator
        if s not in expected.sections:
            continue
        got = await apsis.get_attributes(keyspace, key, s)
        if got is None:
            return Held(exists=False)
        attributes[s] = got
        if section.consents:
            answer = await apsis.read_consents(keyspace, key, s)
            consents[s] = {
                pair: ApsisConsent(kind, modified_at, source == CONSENT_SOURCE)
                for pair, (kind, modified_at, source) in answer.consents.items()
            }
    return Held(exists=True, attributes=attributes, consents=consents)


async def _profile_exists(app: WorkerContext, shop: Shop, customer_id: int) -> bool:
    if not shop.sections:
        return False
    section = shop.sections[0].discriminator
    got = await app.apsis(shop).get_attributes(shop.apsis.keyspace, str(customer_id), section)
    return got is not None


# --- the last result, for status, /admin/status and /metrics ---------------------------------


async def save_result(app: WorkerContext, shop: Shop, audit: Audit, repaired: Mapping[str, int]) -> Json:
    """Keep the audit's counts (no examples) and time under `Keys.audit`."""
    report = audit.report
    result: Json = {
        "at": time.time(),
        "customers": report.customers,
        **report.counts,
        "differing_customers": len(audit.drifted),
        "repaired": dict(repaired),
    }
    await typed(app.redis.set(app.keys.audit(shop.domain), orjson.dumps(result), ex=RESULT_TTL_S))
    return result
