"""Resume after a crash: `shopsync worker` processes, one SIGKILLed halfway through a full sync.

The sandboxes run in the test process (so the oracle can read them); the workers and the CLI
(`shopsync full-sync --wait`) are real OS processes pointed at them through SHOPS_FILE.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import fullsync_control as control
from core.keys import Keys
from sandbox.installation import installation_document, write_installation
from sandbox.shopify.data import CUSTOMER_BASE
from tests.e2e.harness import SECTION_MAIN, pipeline
from tests.fullsync.helpers import FAST_LIMITS, attribute_writes_per_profile, open_limits

ROOT = Path(__file__).resolve().parents[2]
SIZE = 1500
PAGE = 250


def _shopsync(env: dict[str, str], *args: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "shopsync.cli", *args], env=env, cwd=ROOT, text=True, **options
    )


@pytest.mark.slow
async def test_sigkilled_worker_resumes_without_losing_or_redoing_more_than_a_batch(
    redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with pipeline(redis_url, keys, customers=SIZE, workers=(), limits=FAST_LIMITS) as p:
        open_limits(p.store, p.account)
        p.account.faults.set_latency(0.01, 0.03)  # long enough to kill it halfway
        shops = write_installation(
            tmp_path / "shops.toml",
            installation_document(p.shopify.url, p.apsis.url, p.shop.api_version, limits=FAST_LIMITS),
        )
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SHOPSYNC_KEY_PREFIX": keys.prefix,
            "SHOPS_FILE": str(shops),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "SHOPSYNC_FULLSYNC_MAX_AHEAD": "2",  # the walk is still going at the kill
        }
        workers = [_shopsync(env, "worker", stdout=subprocess.DEVNULL) for _ in range(2)]
        cli = _shopsync(
            env, "full-sync", p.shop.domain, "--wait", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert cli.stdout is not None
            sync_id = (await asyncio.to_thread(cli.stdout.readline)).strip()
            assert sync_id.startswith("fs-")
            async with asyncio.timeout(120):
                while True:
                    record = await control.read_sync(p.redis, keys, sync_id)
                    assert record is not None and record["state"] == "running"
                    if record["seen"] >= SIZE * 0.4:
                        break
                    await asyncio.sleep(0.05)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            workers.append(_shopsync(env, "worker", stdout=subprocess.DEVNULL))
            out, _ = await asyncio.to_thread(cli.communicate, timeout=240)
            assert cli.returncode == 0, out
            assert f"full sync {sync_id} finished" in out
            record = await control.read_sync(p.redis, keys, sync_id)
            assert record is not None
            assert record["state"] == "finished" and record["seen"] == SIZE and record["failed"] == 0
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                w.wait(timeout=30)
            if cli.poll() is None:
                cli.kill()
        assert p.mismatches(range(CUSTOMER_BASE, CUSTOMER_BASE + SIZE)) == []
        patches = attribute_writes_per_profile(p.account)
        main = {key: n for (key, section), n in patches.items() if section == SECTION_MAIN}
        assert len(main) == SIZE
        twice = [key for key, n in main.items() if n > 1]
        # Only customers in flight at the kill may be written again: at most one batch's worth.
        assert len(twice) <= PAGE, len(twice)
        print(f"written twice after the SIGKILL: {len(twice)}; revived jobs: {record.get('revived', 0)}")
