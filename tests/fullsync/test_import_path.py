"""Full sync through APSIS profile imports, end to end: sandbox store -> walk into CSV files ->
the sandbox's import v2 -> verification by consent report -> stored states (real Redis, arq workers).

The first test is the fast representative one (`make test`); the rest are under the slow marker.
More in test_import_path_*.py: faults and refused rows, webhooks and consent during an import,
a SIGKILLed worker process.
"""

from __future__ import annotations

from typing import Any

import pytest

from core import fullsync_control as control
from core.keys import Keys
from core.status import collect
from sandbox.apsis.imports import imports_of
from sandbox.apsis.reports import reports_of
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, fast_imports
from tests.fullsync.test_fullsync import WORKERS, store_ids
from worker.deadletters import list_letters


async def test_an_import_full_sync_writes_verifies_and_saves_every_customer(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast: 250 customers over the threshold go through imports, are verified in bulk (one report
    per mapped topic, streamed) and saved, so a second sync finds nothing to do."""
    size = 250
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record: dict[str, Any] = await wait_finished(p.redis, keys, started.sync_id, limit_s=60)
        assert record["state"] == "finished" and record["path"] == "import", record
        assert record["seen"] == size and record["failed"] == 0
        assert record["import_rows"] > 0 and record.get("import_rows_resent", 0) == 0
        assert p.mismatches(store_ids(size)) == []
        topics = sum(len(m.topics) for s in p.shop.sections for m in s.consents)
        assert reports_of(p.account).summary()["requested"] == topics  # verified in bulk
        assert not await p.redis.keys(f"{keys.full_sync_import(started.sync_id)}:seen:*")
        # Of the sync only its record and its files' summary stay: no key grows with the store.
        left = await p.redis.keys(f"{keys.full_sync_record(started.sync_id)}*")
        assert sorted(left) == sorted(
            k.encode()
            for k in (
                keys.full_sync_record(started.sync_id),
                f"{keys.full_sync_import(started.sync_id)}:files",
            )
        )
        state = await p.app.customers.load(p.shop.domain, store_ids(size)[0])
        assert state.state is not None and state.state.sections
        second = await control.start_full_sync(p.redis, keys, p.shop.domain)
        again = await wait_finished(p.redis, keys, second.sync_id, limit_s=60)
        assert again["unchanged"] + again["skipped"] == size, again


@pytest.mark.slow
async def test_full_sync_above_the_threshold_goes_through_imports(redis_url: str, keys: Keys) -> None:
    """At APSIS's own import-request limit (10 a minute: the client's shared bucket)."""
    size = 600
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record: dict[str, Any] = await wait_finished(p.redis, keys, started.sync_id, limit_s=120)
        assert record["state"] == "finished", record
        assert record["path"] == "import"
        # Every profile as the per-profile path would have written it (the oracle of the e2e tests).
        assert p.mismatches(store_ids(size)) == []
        assert record["seen"] == size and record["failed"] == 0
        files = record["import_files"]
        assert files["built"] >= 2 and files["completed"] == files["built"] and files["failed"] == 0
        status = await collect(p.redis, keys)
        phase = next(s["import_phase"] for s in status["full_syncs"] if s["sync_id"] == started.sync_id)
        assert phase["files_completed"] == files["built"] and phase["verified"] and phase["rows_refused"] == 0
        imports = imports_of(p.account).summary()
        assert imports["imports"]["completed"] == files["built"]
        assert imports["rows_applied"] >= record["import_rows"] > 0
        # The stored states were saved: a second full sync finds nothing to write.
        second = await control.start_full_sync(p.redis, keys, p.shop.domain)
        again = await wait_finished(p.redis, keys, second.sync_id, limit_s=120)
        assert again["state"] == "finished" and again["path"] == "import"
        assert again["unchanged"] + again["skipped"] == size, again
        assert imports_of(p.account).summary()["imports"]["completed"] == files["built"]


@pytest.mark.slow
async def test_an_import_failing_every_try_is_dead_lettered(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 150
    async with pipeline(redis_url, keys, customers=size, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        service = imports_of(p.account)
        service.settings.fail_next = 1000  # every import ends in `error`
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=120)
        assert record["state"] == "finished", record
        assert record["import_files"]["failed"] == record["import_files"]["built"] >= 1
        assert record["import_retries"] == 2 * record["import_files"]["built"]  # 3 tries each
        letters = [x for x in await list_letters(p.redis, keys) if x.job_id.startswith("import-failed:")]
        files = {x.job_id.rsplit(":", 1)[0] for x in letters}  # a file's customers, 250 a letter
        assert len(files) == record["import_files"]["built"]
        assert all(len(x.args[1]) <= 250 for x in letters)
        dead = {cid for letter in letters for cid in letter.args[1]}
        assert len(dead) == record["import_rows"]
        assert record["failed"] == record["import_rows"]
