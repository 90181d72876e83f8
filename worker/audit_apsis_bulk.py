"""The drift audit's bulk read of APSIS: consent report exports staged in Redis, per profile only
where a report cannot answer.

    reads = await ReportReads.stage(app, shop, run, addresses)   # every report downloaded
    helds = await reads.held([(customer_id, expected), ...])      # a chunk at a time
    await reads.close()                                           # the staged rows go

`stage` asks one consent report per section and topic (`mappings.audit.report_parts`; the first
of a section carries the attribute columns; a section without consent topics runs on any topic
APSIS lists for it, for its attributes) through `worker.apsis_reports.ApsisReports` (exports:
1 request/s per account, downloads 60 a minute, both in shared buckets), and streams each CSV
into a Redis hash (`Keys.audit_report`: profile key -> the consented channels and the attribute
cells, never the address): memory stays a pipeline's worth of rows whatever the store's size.

`held` reads a chunk's rows in one pipelined round trip and builds the same `Held` the
per-profile path gives (`mappings.audit.held_from_report`). A report shows opt-ins only, so where
Shopify's decision is an opt-in the report does not show (`unsettled_sections`), the profile's
consents in that section are read per profile (`GET /v2/.../consents`): whether APSIS holds an
opt-out given there (which the sync keeps) or nothing. A section no report covers (no topic at
all in APSIS) is read per profile as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import structlog

from core.redis_conn import typed
from mappings.audit import Held, ReportPart, held_from_report, report_cells, report_parts, unsettled_sections
from mappings.installation import Shop
from mappings.plan import AddressAttributes
from mappings.state import SyncState
from worker.apsis_reports import ApsisReports, ConsentReportSpec
from worker.audit_read import CONCURRENCY, profile_exists, read_held, section_consents
from worker.context import WorkerContext

log = structlog.get_logger("worker.audit")

REPORT_TIMEOUT_S = 3 * 3600.0  # how long APSIS may take to build one report
STAGE_TTL_S = 24 * 3600  # staged rows outlive a crashed run by a day at most
PIPELINE_ROWS = 1000


class ReportReads:
    name = "reports"

    def __init__(self, app: WorkerContext, shop: Shop, run: str, parts: list[ReportPart]) -> None:
        self.app, self.shop, self.run, self.parts = app, shop, run, parts
        self.covered = frozenset(p.section for p in parts)
        self.keys = [app.keys.audit_report(shop.domain, run, n) for n in range(len(parts))]
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.per_profile = 0  # customers some of whose data was read per profile

    @classmethod
    async def stage(
        cls, app: WorkerContext, shop: Shop, run: str, addresses: AddressAttributes
    ) -> ReportReads:
        """Request and download every report, keeping its rows in Redis."""
        fallback: dict[str, str] = {}
        for section in shop.sections:
            if not section.consents:
                topics = await app.apsis(shop).topics(section.discriminator)
                names = [n for t in topics if isinstance(n := t.get("discriminator"), str) and n]
                if names:
                    fallback[section.discriminator] = names[0]
        reads = cls(app, shop, run, report_parts(shop, addresses, fallback))
        reports = ApsisReports(app.apsis(shop))
        for part, key in zip(reads.parts, reads.keys, strict=True):
            spec = ConsentReportSpec(
                part.section,
                shop.apsis.keyspace,
                [part.topic],
                # A fallback topic's report still needs a channel column; it is not read.
                channels={c: c for c in part.channels} or {"unread": "email"},
                attribute_version_ids=part.attributes,
            )
            ticket = await reports.request_consent_report(spec)
            rows = 0
            batch: dict[str, bytes] = {}
            async for row in reports.consent_rows(ticket, timeout_s=REPORT_TIMEOUT_S):
                profile_key = row.get("profile_key") or ""
                if not profile_key:
                    continue
                batch[profile_key] = orjson.dumps(report_cells(part, row))
                rows += 1
                if len(batch) >= PIPELINE_ROWS:
                    await reads._flush(key, batch)
            await reads._flush(key, batch)
            log.info("audit_report_staged", section=part.section, topic=part.topic, rows=rows)
        return reads

    async def _flush(self, key: str, batch: dict[str, bytes]) -> None:
        if not batch:
            return
        async with self.app.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=batch)
            pipe.expire(key, STAGE_TTL_S)
            await pipe.execute()
        batch.clear()

    async def held(self, items: Sequence[tuple[int, SyncState | None]]) -> list[Held | None]:
        ids = [str(cid) for cid, _ in items]
        if not ids:
            return []
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.hmget(key, ids)
            columns: list[list[bytes | None]] = await pipe.execute()
        helds = []
        for n in range(len(items)):
            rows: list[Any] = [None if (cell := col[n]) is None else orjson.loads(cell) for col in columns]
            helds.append(held_from_report(self.parts, rows))
        return list(
            await asyncio.gather(*(self._settle(cid, e, h) for (cid, e), h in zip(items, helds, strict=True)))
        )

    async def _settle(self, cid: int, expected: SyncState | None, held: Held) -> Held | None:
        """Fill in per profile what the reports cannot tell."""
        sections = set(expected.sections) if expected is not None else set()
        uncovered = any(s.discriminator not in self.covered for s in self.shop.sections)
        if not sections:
            if held.exists or not uncovered:
                return held
            async with self.gate:
                self.per_profile += 1
                return await read_held(self.app, self.shop, cid, expected)
        if sections - self.covered:
            async with self.gate:  # a section without any topic: the whole profile per profile
                self.per_profile += 1
                return await read_held(self.app, self.shop, cid, expected)
        unsettled = unsettled_sections(self.shop, expected, held)
        if not unsettled:
            return held
        consents = dict(held.consents)
        async with self.gate:
            self.per_profile += 1
            for s in unsettled:
                consents[s] = await section_consents(self.app, self.shop, cid, s)
        return replace(held, consents=consents)

    async def exists(self, customer_id: int) -> bool:
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.hexists(key, str(customer_id))
            found = await pipe.execute()
        if any(found):
            return True
        if all(s.discriminator in self.covered for s in self.shop.sections):
            return False
        return await profile_exists(self.app, self.shop, customer_id)

    def known_keys(self) -> list[str]:
        """One staged hash per section (every report of a section lists the same profiles): its
        fields are the profile keys APSIS holds there."""
        first: dict[str, str] = {}
        for part, key in zip(self.parts, self.keys, strict=True):
            first.setdefault(part.section, key)
        return list(first.values())

    async def close(self) -> None:
        if self.keys:
            await typed(self.app.redis.unlink(*self.keys))  # a row a profile: freed aside
