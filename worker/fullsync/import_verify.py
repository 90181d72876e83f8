"""After the imports: verify their outcome in bulk, save the customers' states, re-send the rest.

1. Verify (once per sync): per section, one consent report per mapped topic
   (`POST /audience/profiles/reports/consents`, a polled download, 1 request per second), the
   first also carrying the section's attribute columns. A customer of a completed file that is
   missing from the report, or whose consent or attribute values differ from what its rows
   wrote, is marked for a re-send. No read per profile.
2. Save: for every customer of a completed file, under its lock, the state its rows lead to is
   saved (so later webhooks diff against what APSIS holds), unless its stored state is newer
   than its row (a webhook or a per-profile write while the import ran): then it is re-sent,
   since the import may have written older data over it.
3. Re-send those customers per profile (`import_letters.resend`, from Shopify's current state).
Each step records its progress (the file's `settled` mark, the re-send hash) so a later slice
picks up where a killed one stopped; a customer is counted once (`:counted`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import orjson
import structlog

from core.redis_conn import command, typed
from mappings.audit import same_value
from mappings.state import SyncState
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey
from worker.fullsync.import_files import ImportSync
from worker.fullsync.import_letters import resend

log = structlog.get_logger("worker.fullsync")

REPORTS = "/audience/profiles/reports/consents"
REPORT_GAP_S = 1.1  # exports: 1 request per second per account
CHUNK = 500
SAVE_CONCURRENCY = 32
ADDRESS = "address"
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
        base = self.app.keys.full_sync_import(walker.sync_id)
        self.resend_key, self.counted_key = f"{base}:resend", f"{base}:counted"
        self.record_key = walker.keys.record

    def _completed(self, section: str | None = None) -> list[int]:
        return [
            f.number
            for f in self.walker.files.values()
            if f.state == "completed" and (section is None or f.section == section)
        ]

    async def run(self, deadline: float) -> bool:
        if not self.walker.record.get("import_verified"):
            for section in self.shop.sections:
                await self._verify_section(
                    section.discriminator,
                    [(m.channel_discriminator, t) for m in section.consents for t in m.topics],
                )
            await typed(self.app.redis.hset(self.record_key, "import_verified", "true"))
            self.walker.record["import_verified"] = True
        for number in self._completed():
            file = self.walker.files[number]
            if file.extra.get("settled"):
                continue
            await self._save_file(number)
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
            "EVAL", _COUNT, 2, self.counted_key, self.record_key, cid, counter, 7 * 24 * 3600
        )

    async def _mark(self, cids: dict[str, str]) -> None:
        if cids:
            await typed(self.app.redis.hset(self.resend_key, mapping=cids))
            await typed(self.app.redis.expire(self.resend_key, 7 * 24 * 3600))

    # --- 1. verify -----------------------------------------------------------------------------

    async def _verify_section(self, section: str, topics: list[tuple[str, str]]) -> None:
        files = self._completed(section)
        if not files or not topics:
            return  # a report needs a topic: a section without consent is trusted to its import
        attributes = list(self.walker.layouts[(section, "in")].attributes)
        for index, (channel, topic) in enumerate(topics):
            columns = attributes if index == 0 else []
            text = await self._report(section, channel, topic, columns)
            seen: set[str] = set()
            for chunk in _chunks(csv.DictReader(io.StringIO(text, newline=""))):
                keys = [row["profile_key"] for row in chunk]
                expected = await self._expected(files, keys)
                marks: dict[str, str] = {}
                for row in chunk:
                    state = expected.get(row["profile_key"])
                    if state is None:
                        continue
                    seen.add(row["profile_key"])
                    reason = _differs(state, section, channel, topic, row, columns)
                    if reason:
                        marks[row["profile_key"]] = reason
                await self._mark(marks)
            if index == 0:
                await self._mark_missing(files, seen)
        log.info(
            "full_sync_import_verified", sync_id=self.walker.sync_id, section=section, reports=len(topics)
        )

    async def _mark_missing(self, files: list[int], seen: set[str]) -> None:
        for number in files:
            async for key, _ in self.app.redis.hscan_iter(self.walker.fkeys.rows(number), count=1000):
                cid = key.decode() if isinstance(key, bytes) else str(key)
                if cid not in seen:
                    await self._mark({cid: "profile missing after the import"})

    async def _expected(self, files: list[int], keys: list[str]) -> dict[str, SyncState]:
        found: dict[str, SyncState] = {}
        for number in files:
            raws = await typed(self.app.redis.hmget(self.walker.fkeys.rows(number), keys))
            for key, raw in zip(keys, raws, strict=True):
                if raw is not None:
                    found[key] = SyncState.from_dict(orjson.loads(raw)["state"])
        return found

    async def _report(self, section: str, channel: str, topic: str, attributes: list[str]) -> str:
        client = self.app.apsis(self.shop)
        body = {
            "section_discriminator": section,
            "keyspace_discriminator": self.shop.apsis.keyspace,
            "topic_discriminators": [topic],
            "channels": [{"field_name": ADDRESS, "channel_discriminator": channel}],
            "attribute_version_ids": attributes,
        }
        await asyncio.sleep(REPORT_GAP_S)
        answer = await client.request("POST", REPORTS, body=orjson.dumps(body))
        assert answer is not None
        poll_url = str((answer.json() or {}).get("poll_url") or "")
        route = poll_url.removeprefix(client.account.base_url.rstrip("/"))
        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            got = await client.request("GET", route, missing_ok=True)
            if got is not None:
                return got.body.decode("utf-8")
            delay = min(delay * 2, 2.0)

    # --- 2. save ------------------------------------------------------------------------------

    async def _save_file(self, number: int) -> None:
        semaphore = asyncio.Semaphore(SAVE_CONCURRENCY)
        resent = await typed(self.app.redis.hkeys(self.resend_key))
        skip = {k.decode() for k in resent}
        tasks: list[asyncio.Task[None]] = []

        async def one(cid: str, raw: bytes) -> None:
            async with semaphore:
                await self._save_one(cid, raw)

        async for key, raw in self.app.redis.hscan_iter(self.walker.fkeys.rows(number), count=1000):
            cid = key.decode()
            if cid in skip:
                continue
            tasks.append(asyncio.create_task(one(cid, raw)))
            if len(tasks) >= 1000:
                await asyncio.gather(*tasks)
                tasks = []
        await asyncio.gather(*tasks)

    async def _save_one(self, cid: str, raw: bytes) -> None:
        data = orjson.loads(raw)
        expected = SyncState.from_dict(data["state"])
        store, domain = self.app.customers, self.shop.domain
        while (token := await store.try_lock(domain, int(cid))) is None:  # noqa: ASYNC110 (a Redis lock)
            await asyncio.sleep(0.05)
        try:
            stored = await store.load(domain, int(cid))
            if stored.deleted_at is not None:
                return
            if stored.state is not None and _newer(stored.state, expected):
                await self._mark({cid: "written while the import ran"})
                return
            await store.settle(domain, int(cid), token, [], expected, stored.marks)
        finally:
            await store.unlock(domain, int(cid), token)
        if data.get("count"):
            await self._count(int(cid), "synced")


def _newer(stored: SyncState, expected: SyncState) -> bool:
    """The stored state holds something newer than the row: a write the import may undo."""
    for group, when in stored.times.items():
        mine = expected.times.get(group)
        if mine is None or when > mine:
            return True
    return False


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
        got: Any = row.get(version) or None
        if isinstance(want[version], bool) and got is not None:
            got = got.lower()  # a boolean attribute may come back as True / true
        if version in want and not same_value(got, want[version]):
            return f"attribute {version} differs"
    return None


def _chunks(reader: Any) -> Iterator[list[dict[str, str]]]:
    chunk: list[dict[str, str]] = []
    for row in reader:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
