"""The import path at scale, in small: verification through the section index whatever the number
of files, the saved states, and the built files' buffer bounded by count and by bytes."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from core import fullsync_control as control
from core.keys import Keys
from core.redis_conn import typed
from sandbox.apsis.reports import reports_of
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, fast_imports
from tests.fullsync.test_fullsync import WORKERS, store_ids
from worker.fullsync import import_files, imports, walker
from worker.fullsync.import_files import ImportFile


def _file(number: int, state: str, size: int) -> ImportFile:
    return ImportFile(number, "com.apsis1.sections.s", "in", state=state, size=size)


def test_the_built_files_buffer_is_bounded_by_count_and_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_BUILT", 3)
    monkeypatch.setattr(imports, "BUFFER_BYTES", 1000)
    assert not imports._over_buffer([_file(0, "built", 400), _file(1, "requested", 599)])
    assert imports._over_buffer([_file(0, "built", 400), _file(1, "requested", 600)])  # bytes
    small = [_file(n, "built", 1) for n in range(3)]
    assert imports._over_buffer(small)  # count
    # Files uploaded, completed or still building are not waiting for an upload.
    others = [_file(0, "uploaded", 5000), _file(1, "completed", 5000), _file(2, "building", 5000)]
    assert not imports._over_buffer(others)


@pytest.mark.parametrize("indexed", [True, False])
async def test_many_small_files_are_verified_through_the_index_and_saved(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch, indexed: bool
) -> None:
    """Files closed at 20 rows (a file per page: several per section): every reported profile finds its expected
    state through the section index (one found nowhere would be re-sent as missing), every state
    is saved, and the index leaves Redis with the verification. Without the index (a sync begun
    before it existed: here every call names a new key, so the one verified is never written)
    the verification asks every file, with the same outcome."""
    if not indexed:
        monkeypatch.setattr(
            import_files.FileKeys, "where", lambda self, section: f"{self._base}:where:{uuid4()}"
        )
    monkeypatch.setattr(import_files, "FILE_ROWS", 20)
    monkeypatch.setattr(import_files, "FIRST_FILE_ROWS", 20)
    size = 250
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record: dict[str, Any] = await wait_finished(p.redis, keys, started.sync_id, limit_s=90)
        assert record["state"] == "finished" and record["path"] == "import", record
        assert record["seen"] == size and record["failed"] == 0
        assert record["import_files"]["completed"] >= 5, record["import_files"]
        assert record.get("import_rows_resent", 0) == 0, record
        assert p.mismatches(store_ids(size)) == []
        base = keys.full_sync_import(started.sync_id)
        assert not await p.redis.keys(f"{base}:rows:*") and not await p.redis.keys(f"{base}:file:*")
        held = await typed(p.redis.hgetall(f"{base}:files"))
        files = [ImportFile.from_json(raw) for raw in held.values()]
        if indexed:
            assert not await p.redis.keys(f"{base}:where:*")
            # Each file's states were saved as its import completed, while APSIS processed the
            # others, not after the last one.
            last_completed = max(f.extra["completed_at"] for f in files)
            assert min(f.extra["settled_at"] for f in files) < last_completed
        assert not await p.redis.keys(f"{base}:seen:*")
        for cid in store_ids(size)[:20]:
            stored = await p.app.customers.load(p.shop.domain, cid)
            assert stored.state is not None and stored.state.sections and stored.staged is None
            assert not await p.redis.exists(keys.customer_lock(p.shop.domain, cid))


async def test_verification_spans_slices_and_requests_each_report_once(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section's verification takes minutes at a million customers, more than one walk slice:
    with slices of 0.3 s and reports ready only after 4 s, each slice polls the report it asked
    for (its poll URL kept on the record) and the next goes on with the next report, instead of
    the slice's job being cut by its timeout and the section started over."""
    monkeypatch.setattr(walker, "WALK_SLICE_S", 0.3)
    monkeypatch.setattr(walker, "WALK_TIMEOUT_S", 6.0)  # shorter than a section's reports take
    size = 250
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        service = reports_of(p.account)
        service.report_delay_s = 4.0  # longer than a slice waits for it
        downloads_at_request: list[int] = []
        request = service.request

        def counted_request(body: Any, base_url: str) -> dict[str, Any]:
            downloads_at_request.append(service.downloads)
            return request(body, base_url)

        monkeypatch.setattr(service, "request", counted_request)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record: dict[str, Any] = await wait_finished(p.redis, keys, started.sync_id, limit_s=90)
        assert record["state"] == "finished" and record["path"] == "import", record
        assert record["seen"] == size and record["failed"] == 0
        assert record.get("import_rows_resent", 0) == 0, record
        topics = sum(len(m.topics) for s in p.shop.sections for m in s.consents)
        assert reports_of(p.account).summary()["requested"] == topics  # none asked twice
        # A section's reports are all asked for before the first is read: APSIS builds them side
        # by side instead of one after another's comparison.
        first = sum(len(m.topics) for m in p.shop.sections[0].consents)
        assert first > 1 and downloads_at_request[:first] == [0] * first, downloads_at_request
        assert p.mismatches(store_ids(size)) == []
        # The steps' marks and poll URLs leave the record with their section.
        assert not [k for k in record if k.startswith("import_verified:") and k.count(":") > 1]
