"""After each import: save the customers' states; after all of them: verify in bulk, re-send the rest.

1. Save (a file at a time, as soon as its import completes: `Verifier.settle`, called by the
   driver while APSIS processes the other files): for every customer of the file, under its
   lock, the state its rows lead to is saved, or, when a newer state or staged writes were
   there, the customer is marked for a re-send instead (`worker.fullsync.import_save`: a few
   round trips per chunk of customers). The file's rows then leave Redis (its customers stay in
   the section index), so the expected states are held only for files not yet completed.
2. Verify (once every file is done; once per section, the section's mark kept on the record):
   consent reports through `worker.apsis_reports.ApsisReports`
   (`POST /audience/profiles/reports/consents`, a polled download, 1 request per second, the
   rows streamed as they arrive). One report per mapped topic, the first also carrying the
   section's attribute columns. A section without a consent mapping is verified the same way
   through one report on any topic of the section (read from APSIS): the report lists every
   profile of the section whatever its consent, so its attribute columns check the import
   (docs/APSIS.md). Only a section without any topic falls back to a bounded sample of
   per-profile reads (`SAMPLE`), a weaker check. A customer of a completed file missing from the
   first report, or whose consent or attribute values differ from its saved state, is marked for
   a re-send. Memory stays bounded whatever the size: rows are compared a chunk at a time
   against the saved states in Redis (found through the section index), and the keys seen go
   to a Redis set (`:seen:{section}`), not to the process. A sync begun before the section index
   existed keeps its rows until verified and is compared with them.
3. Re-send those customers per profile (`import_letters.resend`, from Shopify's current state,
   every written record forgotten first).
Each step records its progress (the file's `settled` mark, the section marks, the re-send hash)
so a later slice picks up where a killed one stopped; a customer is counted once (`:counted`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from core.redis_conn import typed
from mappings.import_rows import cell
from worker.apsis_reports import (
    ApsisReports,
    ConsentReportSpec,
    ReportGoneError,
    ReportTicket,
    ReportTimeoutError,
)
from worker.fullsync.import_compare import ADDRESS, Expected, chunks, differs, in_files
from worker.fullsync.import_files import ImportSync
from worker.fullsync.import_letters import resend
from worker.fullsync.import_save import Saver, hash_field_chunks

log = structlog.get_logger("worker.fullsync")

SAMPLE = 200  # per-profile reads for a section APSIS gives no topic to report on
REPORT_TIMEOUT_S = 1800.0
DATA_TTL_S = 7 * 24 * 3600
# KEYS: counted, record. ARGV: customer id, counter, ttl. Counts a customer once; nothing once the
# walk is over (a slice that outlived its lease must not count again after `counted` was dropped).
_COUNT = """
if redis.call('HGET', KEYS[2], 'walk_done') == 'true' then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HINCRBY', KEYS[2], 'seen', 1)
return 1
"""


@dataclass(frozen=True, slots=True)
class _Report:
    """One consent report of a section's verification, and what its rows are compared with."""

    section: str
    channel: str
    topic: str
    columns: list[str]  # attribute version ids (the section's first report carries them)
    files: list[int]  # the section's completed files
    seen_key: str | None  # where the first report records the profiles APSIS lists
    step: str  # its mark on the sync's record

    @property
    def ticket_field(self) -> str:
        """Where the sync's record keeps the report's poll URL."""
        return f"{self.step}:report"


class Verifier:
    def __init__(self, walker: ImportSync) -> None:
        self.walker, self.app, self.shop = walker, walker.app, walker.shop
        self.base = self.app.keys.full_sync_import(walker.sync_id)
        self.resend_key, self.counted_key = f"{self.base}:resend", f"{self.base}:counted"
        self.record_key = walker.keys.record
        self.saver = Saver(self, self.shop.domain, walker.fkeys)
        self.indexed = True

    def _completed(self, section: str | None = None) -> list[int]:
        return [
            f.number
            for f in self.walker.files.values()
            if f.state == "completed" and (section is None or f.section == section)
        ]

    async def settle(self, number: int) -> None:
        """Save a completed file's customers' states (`import_save`), then drop its CSV and, once
        the section index holds its customers, its rows: verification then compares the reports
        with the saved states. The driver settles each file as its import completes, while the
        others are processed; `run` settles whatever is left before it verifies."""
        file = self.walker.files[number]
        if file.extra.get("settled"):
            return
        await self.saver.save_file(number, float(file.extra.get("completed_at") or time.time()))
        file.extra["settled"], file.extra["settled_at"] = True, time.time()
        indexed = bool(await typed(self.app.redis.exists(self.walker.fkeys.where(file.section))))
        async with self.app.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.walker.fkeys.files, str(number), file.to_json())
            pipe.unlink(self.walker.fkeys.content(number))
            if indexed:  # else a sync begun before the index: its rows stay until verified
                pipe.unlink(self.walker.fkeys.rows(number))
            await pipe.execute()

    def _in_completed(self, section: str, files: list[int]) -> Callable[[Any], bool]:
        """Whether a section index entry names one of `files`, the section's completed ones.
        When every file of the section completed (the usual case), any entry does: the test is
        then a truth test, not a parse of the entry (a tenth of the verification's CPU)."""
        completed = set(files)
        ours = {f.number for f in self.walker.files.values() if f.section == section}
        if ours <= completed:
            return bool
        return lambda held: in_files(held, completed)

    def unsettled(self) -> list[int]:
        return [n for n in self._completed() if not self.walker.files[n].extra.get("settled")]

    async def run(self, deadline: float) -> bool:
        for number in self.unsettled():
            await self.settle(number)
            if time.monotonic() > deadline:
                return False
        if not self.walker.record.get("import_verified"):
            for section in self.shop.sections:
                mark = f"import_verified:{section.discriminator}"
                if await typed(self.app.redis.hexists(self.record_key, mark)):
                    continue
                topics = [(m.channel_discriminator, t) for m in section.consents for t in m.topics]
                if not await self._verify_section(section.discriminator, topics, deadline):
                    return False  # the next slice goes on from the next report
            await typed(self.app.redis.hset(self.record_key, "import_verified", "true"))
            self.walker.record["import_verified"] = True
        if self._completed():
            await typed(self.app.redis.unlink(*[self.walker.fkeys.rows(n) for n in self._completed()]))
        while True:
            batch = await typed(self.app.redis.hrandfield(self.resend_key, 200))
            if not batch:
                return True
            cids = [int(c) for c in batch]
            failed = {cid for cid, _ in await resend(self.app, self.shop, cids, "import verification")}
            done = [cid for cid in cids if cid not in failed]
            for cid in done:
                await self._count(cid, "synced")
            if done:
                async with self.app.redis.pipeline(transaction=True) as pipe:
                    pipe.hdel(self.resend_key, *[str(c) for c in done])
                    pipe.hincrby(self.record_key, "import_rows_resent", len(done))
                    await pipe.execute()
            if failed or time.monotonic() > deadline:
                return False  # the next slice tries again (a transient failure)

    async def _count(self, cid: int, counter: str) -> None:
        await self.app.script(_COUNT)(
            keys=[self.counted_key, self.record_key], args=[cid, counter, DATA_TTL_S]
        )

    async def _mark(self, cids: dict[str, str]) -> None:
        if cids:
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.resend_key, mapping=cids)
                pipe.expire(self.resend_key, DATA_TTL_S)
                await pipe.execute()

    # --- 1. verify -----------------------------------------------------------------------------

    async def _verify_section(self, section: str, topics: list[tuple[str, str]], deadline: float) -> bool:
        """Verify one section; False when the slice's `deadline` came first. Each report is
        requested once (its poll URL kept on the record, valid a day) and, once compared, marked
        done, so a later slice polls on or goes on with the next report instead of starting the
        section over (a section of a million customers takes minutes: more than one slice)."""
        files = self._completed(section)
        done = f"import_verified:{section}"
        if not files:
            await typed(self.app.redis.hset(self.record_key, done, "true"))
            return True
        attributes = list(self.walker.layouts[(section, "in")].attributes)
        # A sync begun before the section index existed (an upgrade mid-sync) asks every file.
        self.indexed = bool(await typed(self.app.redis.exists(self.walker.fkeys.where(section))))
        reported = topics or await self._any_topic(section)
        steps: list[str] = []
        if not reported:
            await self._verify_sample(section, files, attributes)
        seen_key = f"{self.base}:seen:{section}"
        todo: list[_Report] = []
        for index, (channel, topic) in enumerate(reported):
            columns, seen = (attributes, seen_key) if index == 0 else ([], None)
            report = _Report(section, channel, topic, columns, files, seen, f"{done}:{index}")
            steps += [report.step, report.ticket_field]
            if not await typed(self.app.redis.hexists(self.record_key, report.step)):
                todo.append(report)
        # Every report of the section is asked for before the first is read: APSIS builds the
        # later ones while this process compares the earlier ones' rows.
        tickets = [await self._ticket(report) for report in todo]
        for report, ticket in zip(todo, tickets, strict=True):
            if time.monotonic() > deadline:
                return False
            if not await self._compare_report(report, ticket, deadline):
                return False
            await typed(self.app.redis.hset(self.record_key, report.step, "true"))
        if reported:
            steps.append(f"{done}:missing")
            if not await typed(self.app.redis.hexists(self.record_key, f"{done}:missing")):
                if time.monotonic() > deadline:
                    return False
                await self._mark_missing(section, files, seen_key)
                await typed(self.app.redis.hset(self.record_key, f"{done}:missing", "true"))
        async with self.app.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.record_key, done, "true")
            if steps:
                pipe.hdel(self.record_key, *steps)
            # UNLINK, not DEL: these hold a field a customer, and Redis frees a DEL's in its one
            # thread (56 ms for 200,000 fields), while every webhook's command waits; UNLINK frees
            # them in the background. The same for every per-customer key of the import path.
            pipe.unlink(seen_key, self.walker.fkeys.where(section))
            await pipe.execute()
        log.info(
            "full_sync_import_verified",
            sync_id=self.walker.sync_id,
            section=section,
            reports=len(reported),
            mapped_consent=bool(topics),
        )
        return True

    async def _ticket(self, report: _Report) -> ReportTicket:
        """The report's poll URL: asked for once and kept on the record (valid a day)."""
        raw = await typed(self.app.redis.hget(self.record_key, report.ticket_field))
        if raw is not None:
            return ReportTicket(raw.decode() if isinstance(raw, bytes) else str(raw))
        spec = ConsentReportSpec(
            report.section,
            self.shop.apsis.keyspace,
            [report.topic],
            channels={ADDRESS: report.channel},
            attribute_version_ids=report.columns,
        )
        ticket = await ApsisReports(self.app.apsis(self.shop)).request_consent_report(spec)
        await typed(self.app.redis.hset(self.record_key, report.ticket_field, ticket.poll_url))
        return ticket

    async def _compare_report(self, report: _Report, ticket: ReportTicket, deadline: float) -> bool:
        """Compare one report with the saved states, a chunk at a time; False when it was not
        ready before `deadline` (or is gone: a new one is requested next time)."""
        reports = ApsisReports(self.app.apsis(self.shop))
        wait_s = max(1.0, min(REPORT_TIMEOUT_S, deadline - time.monotonic()))
        try:
            async with contextlib.aclosing(reports.consent_rows(ticket, timeout_s=wait_s)) as rows:
                async for chunk in chunks(rows):
                    began = time.monotonic()
                    await self._compare_chunk(report, chunk)
                    await self.app.realtime_lag.give_way(time.monotonic() - began)  # webhooks beside it
        except ReportTimeoutError:
            return False  # not ready yet: the next slice polls on
        except ReportGoneError:
            await typed(self.app.redis.hdel(self.record_key, report.ticket_field))
            return False
        return True

    async def _compare_chunk(self, report: _Report, chunk: list[dict[str, str]]) -> None:
        keys = [row.get("profile_key", "") for row in chunk]
        expected = await self._expected(report.section, report.files, keys)
        marks: dict[str, str] = {}
        for row in chunk:
            state = expected.get(row.get("profile_key", ""))
            if state is None:
                continue
            reason = differs(state, report.section, report.channel, report.topic, row, report.columns)
            if reason:
                marks[row["profile_key"]] = reason
        await self._mark(marks)
        if expected and report.seen_key is not None:  # the first report's keys: who is in APSIS
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(report.seen_key, *expected)
                pipe.expire(report.seen_key, DATA_TTL_S)
                await pipe.execute()

    async def _any_topic(self, section: str) -> list[tuple[str, str]]:
        """One topic of the section to run the report on (its consent columns are not compared)."""
        for topic in await self.app.apsis(self.shop).topics(section):
            name = topic.get("discriminator")
            if isinstance(name, str) and name:
                return [(str(topic.get("channel_discriminator") or "com.apsis1.channels.email"), name)]
        return []

    async def _mark_missing(self, section: str, files: list[int], seen_key: str) -> None:
        """Mark for a re-send every customer of the completed files that no report listed."""
        async for keys in self._customers(section, files):
            flags = await typed(self.app.redis.smismember(seen_key, keys))
            await self._mark(
                {k: "profile missing after the import" for k, f in zip(keys, flags, strict=True) if not f}
            )

    async def _customers(self, section: str, files: list[int]) -> AsyncIterator[list[str]]:
        """The customers of the section's completed files, a chunk at a time: from the section
        index, or (a sync begun before the index) from the files' rows."""
        if not self.indexed:
            for number in files:
                async for keys in hash_field_chunks(self.app, self.walker.fkeys.rows(number)):
                    yield keys
            return
        where = self.walker.fkeys.where(section)
        async for keys in hash_field_chunks(self.app, where, self._in_completed(section, files)):
            yield keys

    async def _expected(self, section: str, files: list[int], keys: list[str]) -> dict[str, Expected]:
        """What APSIS should hold for `keys` among the section's completed files. Indexed: the
        states saved when each file was settled (a webhook since then only makes them newer),
        for the keys the section index places in a completed file; one round trip a chunk.
        Otherwise (a sync begun before the index): the rows of every completed file. The states
        stay in their JSON form (`Expected`): building each `SyncState` took a quarter of the
        verification's time at a million customers."""
        if not keys:
            return {}
        if not self.indexed:
            return await self._expected_in_rows(files, keys)
        kept = self._in_completed(section, files)
        domain, names = self.shop.domain, self.app.keys.customer_state
        async with self.app.redis.pipeline(transaction=False) as pipe:
            # One round trip: a key outside the completed files (a customer of this section
            # synced per profile) costs a state read for nothing, which is rarer than a second trip.
            pipe.hmget(self.walker.fkeys.where(section), keys)
            pipe.mget([names(domain, key) for key in keys])
            held, raws = await pipe.execute()
        found: dict[str, Expected] = {}
        for key, where, raw in zip(keys, held, raws, strict=True):
            if raw is None or not kept(where):
                continue
            saved = orjson.loads(raw)
            if "deleted_at" not in saved:
                found[key] = saved
        return found

    async def _expected_in_rows(self, files: list[int], keys: list[str]) -> dict[str, Expected]:
        found: dict[str, Expected] = {}
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for number in files:
                pipe.hmget(self.walker.fkeys.rows(number), keys)
            answers = await pipe.execute()
        for raws in answers:
            for key, raw in zip(keys, raws, strict=True):
                if raw is not None:
                    found[key] = orjson.loads(raw)["state"]
        return found

    async def _verify_sample(self, section: str, files: list[int], attributes: list[str]) -> None:
        """No topic to report on: read a bounded random sample of the files' profiles one by one."""
        apsis, keyspace = self.app.apsis(self.shop), self.shop.apsis.keyspace
        picked: list[Any] = []
        if self.indexed:
            picked = await typed(self.app.redis.hrandfield(self.walker.fkeys.where(section), SAMPLE)) or []
        else:
            for number in files:
                per_file = max(1, SAMPLE // len(files))
                picked += (
                    await typed(self.app.redis.hrandfield(self.walker.fkeys.rows(number), per_file)) or []
                )
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in picked]
        expected = await self._expected(section, files, keys)
        marks: dict[str, str] = {}
        for key, state in expected.items():
            got = await apsis.get_attributes(keyspace, key, section)
            if got is None:
                marks[key] = "profile missing after the import"
                continue
            row = {v: cell(got.get(v)) for v in attributes}
            reason = differs(state, section, "", "", row, attributes)
            if reason:
                marks[key] = reason
        await self._mark(marks)
        log.warning(
            "full_sync_import_verified_by_sample",
            sync_id=self.walker.sync_id,
            section=section,
            checked=len(expected),
            differing=len(marks),
            reason="APSIS lists no topic for the section: no consent report to verify it with",
        )


__all__ = ["Verifier"]
