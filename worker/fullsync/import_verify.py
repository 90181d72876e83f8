"""After the imports: verify their outcome in bulk, save the customers' states, re-send the rest.

1. Verify (once per section, the section's mark kept on the record): consent reports through
   `worker.apsis_reports.ApsisReports` (`POST /audience/profiles/reports/consents`, a polled
   download, 1 request per second, the rows streamed as they arrive). One report per mapped topic,
   the first also carrying the section's attribute columns. A section without a consent mapping
   is verified the same way through one report on any topic of the section (read from APSIS):
   the report lists every profile of the section whatever its consent, so its attribute columns
   check the import (docs/APSIS.md). Only a section without any topic falls back to a bounded
   sample of per-profile reads (`SAMPLE`), a weaker check. A customer of a completed file missing
   from the first report, or whose consent or attribute values differ from what its rows wrote,
   is marked for a re-send. Memory stays bounded whatever the size: rows are compared a chunk
   at a time against the files' expected states in Redis, and the keys seen go to a Redis set
   (`:seen:{section}`), not to the process.
2. Save: for every customer of a completed file, under its lock, the state its rows lead to is
   saved, or, when a newer state or staged writes were there, the customer is re-sent instead
   (`worker.fullsync.import_save`: a few round trips per chunk of customers).
3. Re-send those customers per profile (`import_letters.resend`, from Shopify's current state).
Each step records its progress (the section marks, the file's `settled` mark, the re-send hash)
so a later slice picks up where a killed one stopped; a customer is counted once (`:counted`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog

from core.redis_conn import command, typed
from mappings.audit import same_value
from mappings.import_rows import cell
from mappings.state import SyncState
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey
from worker.apsis_reports import ApsisReports, ConsentReportSpec
from worker.fullsync.import_files import ImportSync
from worker.fullsync.import_letters import resend
from worker.fullsync.import_save import Saver, hash_field_chunks

log = structlog.get_logger("worker.fullsync")

CHUNK = 500
SAMPLE = 200  # per-profile reads for a section APSIS gives no topic to report on
REPORT_TIMEOUT_S = 1800.0
ADDRESS = "address"
DATA_TTL_S = 7 * 24 * 3600
# KEYS: counted, record. ARGV: customer id, counter, ttl. Counts a customer once.
_COUNT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HINCRBY', KEYS[2], 'seen', 1)
return 1
"""


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

    async def run(self, deadline: float) -> bool:
        if not self.walker.record.get("import_verified"):
            for section in self.shop.sections:
                mark = f"import_verified:{section.discriminator}"
                if await typed(self.app.redis.hexists(self.record_key, mark)):
                    continue
                await self._verify_section(
                    section.discriminator,
                    [(m.channel_discriminator, t) for m in section.consents for t in m.topics],
                )
                await typed(self.app.redis.hset(self.record_key, mark, "true"))
            await typed(self.app.redis.hset(self.record_key, "import_verified", "true"))
            self.walker.record["import_verified"] = True
        for number in self._completed():
            file = self.walker.files[number]
            if file.extra.get("settled"):
                continue
            await self.saver.save_file(number, float(file.extra.get("completed_at") or time.time()))
            file.extra["settled"] = True
            async with self.app.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.walker.fkeys.files, str(number), file.to_json())
                pipe.delete(self.walker.fkeys.content(number), self.walker.fkeys.rows(number))
                await pipe.execute()
            if time.monotonic() > deadline:
                return False
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
        await command(self.app.redis)(
            "EVAL", _COUNT, 2, self.counted_key, self.record_key, cid, counter, DATA_TTL_S
        )

    async def _mark(self, cids: dict[str, str]) -> None:
        if cids:
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.resend_key, mapping=cids)
                pipe.expire(self.resend_key, DATA_TTL_S)
                await pipe.execute()

    # --- 1. verify -----------------------------------------------------------------------------

    async def _verify_section(self, section: str, topics: list[tuple[str, str]]) -> None:
        files = self._completed(section)
        if not files:
            return
        attributes = list(self.walker.layouts[(section, "in")].attributes)
        reported = topics or await self._any_topic(section)
        if not reported:
            await self._verify_sample(section, files, attributes)
            return
        seen_key = f"{self.base}:seen:{section}"
        await typed(self.app.redis.delete(seen_key))
        # A sync begun before the section index existed (an upgrade mid-sync) asks every file.
        self.indexed = bool(await typed(self.app.redis.exists(self.walker.fkeys.where(section))))
        for index, (channel, topic) in enumerate(reported):
            columns = attributes if index == 0 else []
            rows = self._report_rows(section, channel, topic, columns)
            async for chunk in _chunks(rows):
                keys = [row.get("profile_key", "") for row in chunk]
                expected = await self._expected(section, files, keys)
                marks: dict[str, str] = {}
                for row in chunk:
                    state = expected.get(row.get("profile_key", ""))
                    if state is None:
                        continue
                    reason = _differs(state, section, channel, topic, row, columns)
                    if reason:
                        marks[row["profile_key"]] = reason
                await self._mark(marks)
                if index == 0 and expected:
                    async with self.app.redis.pipeline(transaction=False) as pipe:
                        pipe.sadd(seen_key, *expected)
                        pipe.expire(seen_key, DATA_TTL_S)
                        await pipe.execute()
        await self._mark_missing(files, seen_key)
        await typed(self.app.redis.delete(seen_key, self.walker.fkeys.where(section)))
        log.info(
            "full_sync_import_verified",
            sync_id=self.walker.sync_id,
            section=section,
            reports=len(reported),
            mapped_consent=bool(topics),
        )

    async def _any_topic(self, section: str) -> list[tuple[str, str]]:
        """One topic of the section to run the report on (its consent columns are not compared)."""
        for topic in await self.app.apsis(self.shop).topics(section):
            name = topic.get("discriminator")
            if isinstance(name, str) and name:
                return [(str(topic.get("channel_discriminator") or "com.apsis1.channels.email"), name)]
        return []

    def _report_rows(
        self, section: str, channel: str, topic: str, attributes: list[str]
    ) -> AsyncIterator[dict[str, str]]:
        reports = ApsisReports(self.app.apsis(self.shop))
        spec = ConsentReportSpec(
            section,
            self.shop.apsis.keyspace,
            [topic],
            channels={ADDRESS: channel},
            attribute_version_ids=attributes,
        )

        async def rows() -> AsyncIterator[dict[str, str]]:
            ticket = await reports.request_consent_report(spec)
            async for row in reports.consent_rows(ticket, timeout_s=REPORT_TIMEOUT_S):
                yield row

        return rows()

    async def _mark_missing(self, files: list[int], seen_key: str) -> None:
        for number in files:
            async for keys in hash_field_chunks(self.app, self.walker.fkeys.rows(number)):
                flags = await typed(self.app.redis.smismember(seen_key, keys))
                await self._mark(
                    {k: "profile missing after the import" for k, f in zip(keys, flags, strict=True) if not f}
                )

    async def _expected(self, section: str, files: list[int], keys: list[str]) -> dict[str, SyncState]:
        """The expected states of `keys` among the section's completed files: each key's files
        from the section's index (`FileKeys.where`), then its row from one of them; two round
        trips a chunk whatever the number of files."""
        if not keys:
            return {}
        completed = set(files)
        by_file: dict[int, list[str]] = {} if self.indexed else {n: keys for n in files}
        if self.indexed:
            held = await typed(self.app.redis.hmget(self.walker.fkeys.where(section), keys))
            for key, raw in zip(keys, held, strict=True):
                text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
                numbers = [int(n) for n in text.split(",") if n]
                number = next((n for n in numbers if n in completed), None)
                if number is not None:
                    by_file.setdefault(number, []).append(key)
        if not by_file:
            return {}
        found: dict[str, SyncState] = {}
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for number, wanted in by_file.items():
                pipe.hmget(self.walker.fkeys.rows(number), wanted)
            answers = await pipe.execute()
        for wanted, raws in zip(by_file.values(), answers, strict=True):
            for key, raw in zip(wanted, raws, strict=True):
                if raw is not None:
                    found[key] = SyncState.from_dict(orjson.loads(raw)["state"])
        return found

    async def _expected_in(self, number: int, keys: list[str]) -> dict[str, SyncState]:
        """The expected states of `keys` in one file's rows."""
        raws = await typed(self.app.redis.hmget(self.walker.fkeys.rows(number), keys)) if keys else []
        return {
            key: SyncState.from_dict(orjson.loads(raw)["state"])
            for key, raw in zip(keys, raws, strict=True)
            if raw is not None
        }

    async def _verify_sample(self, section: str, files: list[int], attributes: list[str]) -> None:
        """No topic to report on: read a bounded random sample of the files' profiles one by one."""
        apsis, keyspace = self.app.apsis(self.shop), self.shop.apsis.keyspace
        per_file = max(1, SAMPLE // len(files))
        checked = marked = 0
        for number in files:
            picked = await typed(self.app.redis.hrandfield(self.walker.fkeys.rows(number), per_file))
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in picked or []]
            expected = await self._expected_in(number, keys)
            marks: dict[str, str] = {}
            for key, state in expected.items():
                got = await apsis.get_attributes(keyspace, key, section)
                checked += 1
                if got is None:
                    marks[key] = "profile missing after the import"
                    continue
                row = {v: cell(got.get(v)) for v in attributes}
                reason = _differs(state, section, "", "", row, attributes)
                if reason:
                    marks[key] = reason
            marked += len(marks)
            await self._mark(marks)
        log.warning(
            "full_sync_import_verified_by_sample",
            sync_id=self.walker.sync_id,
            section=section,
            checked=checked,
            differing=marked,
            reason="APSIS lists no topic for the section: no consent report to verify it with",
        )


def _differs(
    state: SyncState, section: str, channel: str, topic: str, row: dict[str, str], attributes: list[str]
) -> str | None:
    decision = state.consents.get(ConsentKey(section, channel, topic))
    opted_in = bool(row.get(ADDRESS))
    if decision == OPT_IN and not opted_in:
        return f"{channel} {topic}: not opted in"
    if decision == OPT_OUT and opted_in:
        return f"{channel} {topic}: still opted in"
    want = state.attributes.get(section, {})
    for version in attributes:
        if version not in want:
            continue
        if not same_value(_reported(row.get(version) or None, want[version]), want[version]):
            return f"attribute {version} differs"
    return None


def _reported(cell: str | None, want: Any) -> Any:
    """A report's CSV cell in the JSON type of the value it is compared with: a boolean may come
    back as True / true, a number as 795.0 for 795."""
    if cell is None:
        return None
    if isinstance(want, bool):
        return cell.lower()
    if isinstance(want, int | float):
        try:
            return float(cell)
        except ValueError:
            return cell
    return cell


async def _chunks(rows: AsyncIterator[dict[str, str]]) -> AsyncIterator[list[dict[str, str]]]:
    chunk: list[dict[str, str]] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["Verifier"]
