"""Profile imports (import v2): the account's imports, their limits, and their processing over time.

    POST /v2/audience/sections/{s}/imports            201 {import_id, file_upload_url,
                                                      file_upload_body, file_upload_url_expires_at}
    GET  /audience/sections/{s}/imports/{import_id}   {import_id, result: {status}}
    POST /_storage/apsis-imports                      the presigned upload (upload_storage.py)

Order of the request's checks: the section (404), 10 import requests a minute per account (429,
every request that gets this far counts), the body (import_spec.py: 400/403/404), at most 3
pending imports per account (429 with Retry-After). Pending: uploaded and not final (`queued`,
`in_progress`), or waiting for a file whose upload URL has not expired.

An uploaded file is `queued`; one background task on the server's loop takes the queued imports
in order, marks each `in_progress`, applies its rows at `rows_per_second` (import_processing.py)
and ends it `completed`, or `error` when its header lacks a mapped column or a failure was
injected (`fail_next`). Nothing per row is reported through the API; `summary()` (and
`GET /_sandbox/imports`) counts imports, rows applied and rows skipped by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sandbox.apsis.account import Account
from sandbox.apsis.import_processing import RowOutcome, apply_row
from sandbox.apsis.import_spec import ImportSpec, parse_import_spec
from sandbox.apsis.limits import SlidingWindow, retry_after_header
from sandbox.apsis.problems import ApiError
from sandbox.apsis.upload_storage import UploadStorage
from sandbox.apsis.values import iso

MAX_FILE_BYTES = 50 * 1024 * 1024
STATES = ("waiting_for_file", "queued", "in_progress", "completed", "error")
FINAL = ("completed", "error")
PENDING_RETRY_AFTER_S = 5.0


@dataclass(slots=True)
class ImportRecord:
    import_id: str
    section: str
    spec: ImportSpec
    created_at: float
    expires_at: float  # the upload URL's (account clock)
    status: str = "waiting_for_file"
    path: Path | None = None
    size: int = 0
    error: str = ""
    outcome: RowOutcome = field(default_factory=RowOutcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "section": self.section,
            "status": self.status,
            "created_at": iso(self.created_at),
            "upload_expires_at": iso(self.expires_at),
            "bytes": self.size,
            "error": self.error or None,
            **self.outcome.to_json(),
        }


@dataclass(slots=True)
class ImportSettings:
    rows_per_second: float = 2000.0
    queue_delay_s: float = 0.0  # a queued import waits this long (real time) before it starts
    upload_ttl_s: float = 3600.0
    max_file_bytes: int = MAX_FILE_BYTES
    max_pending: int = 3
    requests_per_minute: int = 10
    fail_next: int = 0  # the next N imports to start end in `error` with nothing applied
    read_only_attributes: set[str] = field(default_factory=set)  # version ids not writable


class ImportService:
    """The imports of one account. Get it with `imports_of(account)`."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.settings = ImportSettings()
        self.storage = UploadStorage()
        self.records: dict[str, ImportRecord] = {}
        self.by_key: dict[str, str] = {}  # storage key -> import id
        self.window = SlidingWindow(self.settings.requests_per_minute, 60.0)
        self.queue: deque[str] = deque()
        self.totals = RowOutcome()
        self.counters: Counter[str] = Counter()  # requested, uploaded, completed, error, 429_*
        self._task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    # ---- the API -------------------------------------------------------------------------

    def request_import(self, section: str, body: Any, base_url: str) -> dict[str, Any]:
        account = self.account
        index = account.sections.get(section)
        if index is None:
            raise ApiError(404, f"section {section} does not exist")
        now = account.clock()
        self.window.limit = self.settings.requests_per_minute
        wait = self.window.hit(None, now)
        if wait:
            self.counters["429_requests_per_minute"] += 1
            raise ApiError(
                429,
                "import request limit exceeded (10 per minute)",
                headers={"Retry-After": retry_after_header(wait)},
            )
        spec = parse_import_spec(account, index, body, self.settings.read_only_attributes)
        pending = self.pending(now)
        if pending >= self.settings.max_pending:
            self.counters["429_pending"] += 1
            raise ApiError(
                429,
                f"pending import count limit reached ({pending} of {self.settings.max_pending})",
                headers={"Retry-After": retry_after_header(self._pending_wait())},
            )
        import_id = secrets.token_hex(12)
        key = f"imports/{import_id}.csv"
        expires_at = now + self.settings.upload_ttl_s
        record = ImportRecord(import_id, section, spec, now, expires_at)
        self.records[import_id] = record
        self.by_key[key] = import_id
        self.counters["requested"] += 1
        fields = self.storage.presign(key, expires_at, self.settings.max_file_bytes, now)
        return {
            "import_id": import_id,
            "file_upload_url": base_url + "/_storage/apsis-imports",
            "file_upload_body": fields,
            "file_upload_url_expires_at": iso(expires_at),
        }

    def status(self, section: str, import_id: str) -> dict[str, Any]:
        if section not in self.account.sections:
            raise ApiError(404, f"section {section} does not exist")
        record = self.records.get(import_id)
        if record is None or record.section != section:
            raise ApiError(404, f"import {import_id} does not exist in section {section}")
        return {"import_id": import_id, "result": {"status": record.status}}

    def pending(self, now: float) -> int:
        return sum(
            1
            for r in self.records.values()
            if r.status in ("queued", "in_progress")
            or (r.status == "waiting_for_file" and r.expires_at > now)
        )

    def _pending_wait(self) -> float:
        """Retry-After of the pending limit: a guess (APSIS does not say), the queue's start delay
        plus a few seconds."""
        return self.settings.queue_delay_s + PENDING_RETRY_AFTER_S

    # ---- the upload ----------------------------------------------------------------------

    def accept_file(self, key: str, path: Path, size: int) -> None:
        """A file arrived at storage for `key`: queue its import (a second upload is dropped)."""
        import_id = self.by_key.get(key)
        record = self.records.get(import_id) if import_id is not None else None
        if record is None or record.status != "waiting_for_file":
            self.storage.remove(path)
            self.counters["upload_ignored"] += 1
            return
        record.path, record.size, record.status = path, size, "queued"
        self.counters["uploaded"] += 1
        self.queue.append(record.import_id)
        self._ensure_worker()

    def upload_expired(self, key: str, now: float) -> bool:
        """Whether the import behind `key` had its URL expired early (the fault switch)."""
        import_id = self.by_key.get(key)
        record = self.records.get(import_id) if import_id is not None else None
        return record is not None and now >= record.expires_at

    def expire_uploads(self) -> int:
        """Fault switch: every upload URL not used yet expires now."""
        now = self.account.clock()
        waiting = [r for r in self.records.values() if r.status == "waiting_for_file" and r.expires_at > now]
        for record in waiting:
            record.expires_at = now
        return len(waiting)

    # ---- processing ----------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._task is None or self._task.done():
            self.idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._work(), name="apsis-sandbox-imports")

    async def _work(self) -> None:
        try:
            while self.queue:
                record = self.records[self.queue.popleft()]
                if self.settings.queue_delay_s > 0:
                    await asyncio.sleep(self.settings.queue_delay_s)
                try:
                    await self._process(record)
                finally:
                    self.storage.remove(record.path)
                    record.path = None
                self.counters[record.status] += 1
                self.totals.add(record.outcome)
        finally:
            self.idle.set()

    async def _process(self, record: ImportRecord) -> None:
        record.status = "in_progress"
        if self.settings.fail_next > 0:
            self.settings.fail_next -= 1
            await asyncio.sleep(0.01)
            record.status, record.error = "error", "injected failure (sandbox fault switch)"
            return
        assert record.path is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        handle = await asyncio.to_thread(record.path.open, newline="", encoding="utf-8", errors="replace")
        with handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or ())
            missing = sorted(record.spec.columns - header)
            if missing:
                record.status, record.error = (
                    "error",
                    f"the file lacks mapped column(s): {', '.join(missing)}",
                )
                return
            for done, row in enumerate(reader, 1):
                apply_row(self.account, record.section, record.spec, row, record.outcome)
                rate = self.settings.rows_per_second
                if done % min(1000, max(1, int(rate / 50))) == 0:  # the loop serves others meanwhile
                    ahead = started + done / rate - loop.time() if rate > 0 else 0.0
                    await asyncio.sleep(max(0.0, ahead))
        record.status = "completed"

    async def wait_idle(self) -> None:
        """Until every uploaded import is final (tests; bound it with `asyncio.timeout`)."""
        await self.idle.wait()

    # ---- inspection and reset ------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        by_status = Counter(r.status for r in self.records.values())
        return {
            "imports": {state: by_status.get(state, 0) for state in STATES},
            "pending": self.pending(self.account.clock()),
            "counters": dict(self.counters),
            **self.totals.to_json(),
            "settings": {
                "rows_per_second": self.settings.rows_per_second,
                "queue_delay_s": self.settings.queue_delay_s,
                "upload_ttl_s": self.settings.upload_ttl_s,
                "max_file_bytes": self.settings.max_file_bytes,
                "max_pending": self.settings.max_pending,
                "requests_per_minute": self.settings.requests_per_minute,
                "fail_next": self.settings.fail_next,
                "read_only_attributes": sorted(self.settings.read_only_attributes),
            },
        }

    def reset(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.idle.set()
        for record in self.records.values():
            self.storage.remove(record.path)
        self.records.clear()
        self.by_key.clear()
        self.queue.clear()
        self.window.reset()
        self.totals = RowOutcome()
        self.counters.clear()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.idle.set()


_SERVICES: WeakKeyDictionary[Account, ImportService] = WeakKeyDictionary()


def imports_of(account: Account) -> ImportService:
    """The account's import service (made on first use)."""
    service = _SERVICES.get(account)
    if service is None:
        service = _SERVICES[account] = ImportService(account)
    return service
