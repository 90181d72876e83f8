"""Driving an import full sync's files through APSIS: request, upload, poll, retry, then finish.

`Driver.step` moves every file one step, without waiting: a `built` file whose account has a
pending-import slot free (`import_files.acquire_slot`, 3 per account) gets an import requested
(its ticket kept: `requested`) and its CSV uploaded from Redis (`uploaded`); an uploaded file's
status is polled every `POLL_S` (`completed`, or `error`). A file whose import ended in `error`,
or whose upload URL expired, is tried again as a whole (a new import, a new upload) up to
`IMPORT_TRIES` times, then its customers become one dead letter (`dead`).

After a crash a `requested` file's import is asked first: uploaded already (queued, in progress,
done) means it is never uploaded again; still waiting for its file means the upload is redone
(to the same URL while it lasts). A step also saves the customers' states of one completed file
(`Verifier.settle`). `Driver.finish` steps until every file is done, then saves what is left,
verifies (`worker.fullsync.import_verify`) and ends the walk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import orjson
import structlog

from core import fullsync_control as control
from core.redis_conn import typed
from worker.apsis_imports import (
    ApsisImports,
    ConsentColumn,
    ConsentMapping,
    ImportSpec,
    ImportTicket,
    UploadUrlExpiredError,
)
from worker.errors import ApiError, RateLimitedError
from worker.fullsync.import_files import ImportFile, ImportSync, acquire_slot, release_slot, stream
from worker.fullsync.import_letters import bury_in, failed_file_letters
from worker.fullsync.import_verify import Verifier
from worker.fullsync.records import maybe_finish
from worker.runtime import is_transient

T = TypeVar("T")
log = structlog.get_logger("worker.fullsync")

POLL_S = 1.0
IMPORT_TRIES = 3
DONE_STATES = frozenset({"completed", "dead"})


def spec_of(walker: ImportSync, file: ImportFile) -> ImportSpec:
    from mappings.import_rows import PROFILE_KEY_COLUMN, attribute_column, consent_column

    layout = walker.layouts[(file.section, file.kind)]
    kind = "opt-in" if file.kind == "in" else "opt-out"
    mappings = []
    for channel, version in layout.addresses.items():
        columns = tuple(
            ConsentColumn(consent_column(c, t), t, c, kind)  # type: ignore[arg-type]
            for c, t in layout.consents
            if c == channel
        )
        if columns:
            mappings.append(ConsentMapping(attribute_column(version), columns))
    return ImportSpec(
        keyspace=walker.shop.apsis.keyspace,
        key_field=PROFILE_KEY_COLUMN,
        attributes={attribute_column(v): v for v in layout.attributes},
        consents=tuple(mappings),
        clear_existing_attributes=file.kind == "in",
    )


async def _through_cancel(step: Coroutine[Any, Any, T]) -> T:
    """`step` run to its end even when the caller is cancelled meanwhile (the cancel is raised
    after it; a second cancel stops waiting). Only for short steps: an API call and a save."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


class Driver:
    def __init__(self, walker: ImportSync) -> None:
        self.walker = walker
        self.app, self.shop = walker.app, walker.shop
        self.imports = ApsisImports(self.app.apsis(self.shop))
        self.client_id = self.shop.apsis.client_id
        self.verifier = Verifier(walker)

    def _member(self, file: ImportFile) -> str:
        return f"{self.walker.sync_id}:{file.number}"

    async def _save(self, file: ImportFile, **counters: int) -> None:
        keys = self.walker.fkeys
        async with self.app.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.files, str(file.number), file.to_json())
            if file.state == "completed":
                # APSIS has the file and never needs it again: the CSV leaves Redis now, not after
                # the whole sync is verified (a store of a million customers held ~175 MB there).
                pipe.unlink(keys.content(file.number))
            for name, value in counters.items():
                pipe.hincrby(self.walker.keys.record, name, value)
            pipe.hset(self.walker.keys.record, "import_files", orjson.dumps(self.summary()).decode())
            await pipe.execute()

    def summary(self) -> dict[str, int]:
        counts = {"built": 0, "uploaded": 0, "processing": 0, "completed": 0, "failed": 0, "building": 0}
        for f in self.walker.files.values():
            if f.state == "building":
                counts["building"] += 1
                continue
            counts["built"] += 1
            if f.state in ("uploaded", "completed", "verified"):
                counts["uploaded"] += 1
            if f.state == "uploaded":
                counts["processing"] += 1
            if f.state in ("completed", "verified"):
                counts["completed"] += 1
            if f.state == "dead":
                counts["failed"] += 1
        return counts

    async def step(self) -> None:
        for file in sorted(self.walker.files.values(), key=lambda f: f.number):
            try:
                if file.state == "built":
                    await self._start(file)
                elif file.state == "requested":
                    await self._resume(file)
                elif file.state == "uploaded" and time.monotonic() - file.polled_at >= POLL_S:
                    await self._poll(file)
            except UploadUrlExpiredError as exc:
                await self._retry(file, f"upload URL expired: {exc}")
            except RateLimitedError:
                await release_slot(self.app, self.client_id, self._member(file))
                if file.state == "requested":
                    file.state, file.ticket = "built", None
                    await self._save(file)
                return  # the account is busy with other imports: later
            except ApiError as exc:
                if is_transient(exc):
                    log.warning("full_sync_import_transient", file=file.number, error=str(exc))
                    return
                await self._retry(file, str(exc))
        # One completed file's states saved a step, while APSIS works on the others (the save
        # took 150 s after the last import at a million customers when it waited for them all).
        unsettled = self.verifier.unsettled()
        if unsettled:
            await self.verifier.settle(unsettled[0])

    async def _start(self, file: ImportFile) -> None:
        if not await acquire_slot(self.app, self.client_id, self._member(file)):
            return
        ticket = await _through_cancel(self._request(file))
        await self._upload(file, ticket)

    async def _request(self, file: ImportFile) -> ImportTicket:
        """The import requested and its id saved, as one step: a walk stopped between the two
        (a worker's shutdown, its budget) would leave APSIS an import no one uploads, holding
        one of the account's 3 pending until its URL expires, and request the file again."""
        ticket = await self.imports.create_import(file.section, spec_of(self.walker, file))
        file.state, file.import_id, file.tries = "requested", ticket.import_id, file.tries + 1
        file.ticket = {
            "url": ticket.upload_url,
            "fields": ticket.upload_fields,
            "expires_at": ticket.expires_at.isoformat(),
        }
        await self._save(file)
        return ticket

    async def _resume(self, file: ImportFile) -> None:
        """A `requested` file after a crash: never upload a file APSIS already has."""
        assert file.import_id is not None and file.ticket is not None
        await acquire_slot(self.app, self.client_id, self._member(file))
        status = await self.imports.import_status(file.section, file.import_id)
        if status.status != "waiting_for_file":
            file.state = "uploaded"
            await self._save(file, import_files_uploaded=1)
            return
        ticket = ImportTicket(
            file.section,
            file.import_id,
            str(file.ticket["url"]),
            dict(file.ticket["fields"]),
            datetime.fromisoformat(str(file.ticket["expires_at"])),
        )
        await self._upload(file, ticket)

    async def _upload(self, file: ImportFile, ticket: ImportTicket) -> None:
        if ticket.expired():
            raise UploadUrlExpiredError("apsis", 403, "upload URL expired", f"expired at {ticket.expires_at}")
        await self.imports.upload_file(ticket, stream(self.app, self.walker.fkeys, file.number))
        file.state, file.ticket, file.polled_at = "uploaded", None, time.monotonic()
        await self._save(file, import_files_uploaded=1)
        log.info("full_sync_import_uploaded", sync_id=self.walker.sync_id, file=file.number, rows=file.rows)

    async def _poll(self, file: ImportFile) -> None:
        assert file.import_id is not None
        file.polled_at = time.monotonic()
        await acquire_slot(self.app, self.client_id, self._member(file))  # renews the lease
        status = await self.imports.import_status(file.section, file.import_id)
        if status.status == "completed":
            file.state, file.extra["completed_at"] = "completed", time.time()
            await release_slot(self.app, self.client_id, self._member(file))
            await self._save(file)
            log.info("full_sync_import_completed", sync_id=self.walker.sync_id, file=file.number)
        elif status.status == "error":
            await self._retry(file, f"import {file.import_id} ended in error: {status.raw.get('result')}")

    async def _retry(self, file: ImportFile, error: str) -> None:
        await release_slot(self.app, self.client_id, self._member(file))
        file.error = error[:300]
        log.warning(
            "full_sync_import_failed",
            sync_id=self.walker.sync_id,
            file=file.number,
            tries=file.tries,
            error=error,
        )
        if file.tries < IMPORT_TRIES:
            file.state, file.ticket, file.import_id = "built", None, None
            await self._save(file, import_retries=1)
            return
        file.state = "dead"
        rows = await typed(self.app.redis.hgetall(self.walker.fkeys.rows(file.number)))
        cids = sorted(int(k) for k in rows)
        letters = failed_file_letters(self.app, self.shop, self.walker.sync_id, file.number, cids, error)
        counted = sum(1 for v in rows.values() if orjson.loads(v)["count"])
        async with self.app.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.walker.fkeys.files, str(file.number), file.to_json())
            for letter in letters:
                bury_in(pipe, self.app.keys, letter)
            pipe.hincrby(self.walker.keys.record, "failed", counted)
            pipe.hincrby(self.walker.keys.record, "seen", counted)
            pipe.unlink(self.walker.fkeys.content(file.number))
            pipe.hset(self.walker.keys.record, "import_files", orjson.dumps(self.summary()).decode())
            await pipe.execute()
        log.error(
            "full_sync_import_dead",
            sync_id=self.walker.sync_id,
            file=file.number,
            customers=len(cids),
            error=error,
        )

    async def finish(self, deadline: float) -> bool:
        """Step until every file is done, then verify and save; True once the walk is over."""
        while not all(f.state in DONE_STATES or f.state == "verified" for f in self.walker.files.values()):
            await self.step()
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        if not await self.verifier.run(deadline):
            return False
        for file in self.walker.files.values():
            if file.state == "completed":
                file.state = "verified"
        async with self.app.redis.pipeline(transaction=True) as pipe:
            for file in self.walker.files.values():
                pipe.hset(self.walker.fkeys.files, str(file.number), file.to_json())
            pipe.hset(
                self.walker.keys.record,
                mapping={"walk_done": b"true", "import_files": orjson.dumps(self.summary()).decode()},
            )
            if self.walker.record.get("total") is None:
                pipe.hset(self.walker.keys.record, "total", str(int(self.walker.record.get("walked") or 0)))
            # A field per customer, of no use once the walk is over: kept, it held memory for a
            # week, then its expiry freed it inside Redis's one thread (UNLINK frees it aside).
            pipe.unlink(self.verifier.counted_key, self.verifier.resend_key)
            await pipe.execute()
        await maybe_finish(self.app, self.walker.sync_id)
        return True


__all__ = ["DONE_STATES", "Driver", "control"]
