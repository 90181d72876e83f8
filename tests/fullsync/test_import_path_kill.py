"""An import full sync survives a SIGKILL of its worker process mid-upload (real processes).

The sandboxes run in the test process (the oracle reads them; a hook holds one upload open); one
`shopsync worker` process runs the sync (its walk in a child process, which dies with it) and is
SIGKILLed while its upload is in flight, with other files already processing in APSIS; a fresh
process resumes the walk from Redis. Nothing is lost
(every customer as the store says), no import is requested again for a file that had one, and no
file APSIS has already received is uploaded again (the sandbox counts a second upload as ignored).

- `mid_body`: killed while the file's body is being sent: APSIS never got it, the new process
  uploads it again to the same URL (the file is `requested`, its import `waiting_for_file`).
- `answer_lost`: killed after APSIS stored the file, before the worker saw the answer: the new
  process asks the import's status first and does not upload it again.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.apsis.imports import imports_of
from sandbox.installation import installation_document, write_installation
from tests.e2e.harness import pipeline
from tests.fullsync.helpers import FAST_LIMITS, open_limits, wait_finished
from tests.fullsync.import_helpers import SYNC, walk_children, worker_process
from tests.fullsync.test_fullsync import store_ids

SIZE = 600
HOLD_S = 4.0


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid_body", "answer_lost"])
async def test_a_sigkilled_worker_resumes_the_import_without_reuploading_or_losing_a_row(
    redis_url: str, keys: Keys, tmp_path: Path, where: str
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS, sync=SYNC) as p:
        open_limits(p.store, p.account)
        service = imports_of(p.account)
        service.settings.rows_per_second = 300.0  # earlier files are still processing at the kill
        storage, receive = service.storage, service.storage.receive
        held = asyncio.Event()
        calls: list[int] = []

        async def hold_one_upload(request: Any, now: float) -> Any:
            calls.append(1)
            if len(calls) != 2:  # the second upload: the first one is processing by then
                return await receive(request, now)
            held.set()
            if where == "mid_body":
                await asyncio.sleep(HOLD_S)  # the body is not read yet: the client dies sending it
                return await receive(request, now)
            received = await receive(request, now)
            await asyncio.sleep(HOLD_S)  # stored; the answer comes after the client died
            return received

        storage.receive = hold_one_upload  # type: ignore[method-assign]
        shops = write_installation(
            tmp_path / "shops.toml",
            installation_document(
                p.shopify.url, p.apsis.url, p.shop.api_version, limits=FAST_LIMITS, sync=SYNC
            ),
        )
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPSYNC_KEY_PREFIX": keys.prefix,
            "SHOPS_FILE": str(shops),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
        workers = [worker_process(env)]
        try:
            started = await control.start_full_sync(p.redis, keys, p.shop.domain)
            async with asyncio.timeout(90):
                await held.wait()
            await asyncio.sleep(0.3)
            assert walk_children(started.sync_id), "the import walk runs in the worker's child"
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            async with asyncio.timeout(10):  # the child dies with its worker (PR_SET_PDEATHSIG)
                while walk_children(started.sync_id):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
            killed = await control.read_sync(p.redis, keys, started.sync_id)
            assert killed is not None and killed["state"] == "running"
            raw = await p.redis.hgetall(f"{keys.full_sync_import(started.sync_id)}:files")  # type: ignore[misc]
            states = sorted(orjson.loads(v)["state"] for v in raw.values())
            # Killed with one file's upload in flight and an earlier one sent to APSIS.
            assert "requested" in states and {"uploaded", "completed"} & set(states), states
            workers.append(worker_process(env))
            record = await wait_finished(p.redis, keys, started.sync_id, limit_s=180)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                w.wait(timeout=30)
        assert record["state"] == "finished" and record["path"] == "import", record
        assert record["seen"] == SIZE and record["failed"] == 0 and record["walked"] == SIZE
        files = record["import_files"]
        assert files["completed"] == files["built"] >= 3 and record.get("import_retries", 0) == 0
        counters = service.counters
        assert counters["requested"] == files["built"], counters  # no import requested twice
        assert counters["uploaded"] == files["built"] and counters["upload_ignored"] == 0, counters
        assert service.summary()["imports"]["completed"] == files["built"]
        assert p.mismatches(store_ids(SIZE)) == []
