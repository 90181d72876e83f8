"""An import full sync against bad rows and a failing APSIS (real Redis, arq workers, sandboxes).

- Rows APSIS would reject (a malformed email or phone, an over-long value) become dead letters
  with the reason before any upload; every other customer is imported as usual.
- An upload URL that expired before the upload: the import is requested anew and succeeds.
- A section without a consent mapping is verified in bulk (a consent report on any of its
  topics lists every profile with its attribute columns); a profile that differs is re-sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.apsis.imports import imports_of
from sandbox.apsis.reports import reports_of
from sandbox.installation import installation_document
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, fast_imports
from tests.fullsync.test_fullsync import WORKERS, store_ids
from worker.deadletters import list_letters

SIZE = 150


@pytest.mark.slow
async def test_rows_apsis_would_reject_become_dead_letters_and_nothing_else_changes(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        ids = store_ids(SIZE)
        bad: dict[int, dict[str, Any]] = {
            ids[10]: {"email": "not-an-address"},
            ids[20]: {"first_name": "x" * 1500},
        }
        phone = next(c for c in ids[30:] if (found := p.store.customer(c)) is not None and found.phone)
        bad[phone] = {"phone": "+12"}
        for cid, change in bad.items():
            customer = p.store.customer(cid)
            assert customer is not None
            p.store.overrides[cid] = dataclasses.replace(customer, **change)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=60)
        assert record["state"] == "finished" and record["path"] == "import", record
        assert record["import_rows_refused"] == len(bad) and record["failed"] == len(bad)
        assert record["seen"] == SIZE
        letters = {
            x.args[1][0]: x.error
            for x in await list_letters(p.redis, keys)
            if x.job_id.startswith("import-refused:")
        }
        assert set(letters) == set(bad)
        assert "not an email address" in letters[ids[10]]
        assert "characters (at most 1000)" in letters[ids[20]]
        assert "E.164" in letters[phone]
        # Refused before upload: APSIS skipped no row and holds no profile for them.
        assert imports_of(p.account).summary()["rows_skipped"] == 0
        assert all((p.shop.apsis.keyspace, str(cid)) not in p.account.profiles for cid in bad)
        assert p.mismatches([c for c in ids if c not in bad]) == []


@pytest.mark.slow
async def test_an_expired_upload_url_is_requested_anew_and_the_import_succeeds(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        service = imports_of(p.account)
        request = service.request_import
        expired: list[str] = []

        def request_then_expire(*args: Any, **kwargs: Any) -> dict[str, Any]:
            answer = request(*args, **kwargs)
            if not expired:  # the first upload URL expires before the worker can use it
                expired.append(answer["import_id"])
                asyncio.get_running_loop().call_soon(service.expire_uploads)
            return answer

        monkeypatch.setattr(service, "request_import", request_then_expire)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=60)
        assert record["state"] == "finished" and record["failed"] == 0, record
        assert record["import_retries"] >= 1
        files = record["import_files"]
        assert files["completed"] == files["built"] and files["failed"] == 0
        assert service.records[expired[0]].status == "waiting_for_file"  # abandoned, never uploaded
        assert p.mismatches(store_ids(SIZE)) == []


@pytest.mark.slow
async def test_a_section_without_consent_mapping_is_verified_in_bulk(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = installation_document("http://x", "http://y")
    main = next(s for s in document["shop"][0]["section"] if s["discriminator"] == SECTION_MAIN)
    main.pop("consents", None)
    async with pipeline(
        redis_url, keys, customers=SIZE, workers=WORKERS, limits=FAST_LIMITS, sync=SYNC, section=[main]
    ) as p:
        open_limits(p.store, p.account)
        fast_imports(p.account, monkeypatch)
        reports = reports_of(p.account)
        tampered = str(store_ids(SIZE)[5])
        request = reports.request

        def tamper_then_request(*args: Any, **kwargs: Any) -> dict[str, Any]:
            # A value that did not come out as the import wrote it (APSIS changed it since).
            p.account.attributes[(p.shop.apsis.keyspace, tampered, SECTION_MAIN)]["1002"] = "Tampered"
            return request(*args, **kwargs)

        monkeypatch.setattr(reports, "request", tamper_then_request)
        started = await control.start_full_sync(p.redis, keys, p.shop.domain)
        record = await wait_finished(p.redis, keys, started.sync_id, limit_s=60)
        assert record["state"] == "finished" and record["failed"] == 0, record
        assert reports.requested == 1  # one report, on a topic the installation does not map
        assert record["import_rows_resent"] == 1
        assert p.mismatches(store_ids(SIZE)) == []
