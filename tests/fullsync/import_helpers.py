"""Shared pieces of the import-path tests (tests/fullsync/test_import_path*.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis

from core import fullsync_control as control
from core.keys import Keys
from sandbox.apsis.account import Account
from sandbox.apsis.imports import imports_of
from sandbox.apsis.reports import reports_of
from worker import apsis_imports

ROOT = Path(__file__).resolve().parents[2]
SYNC: dict[str, Any] = {"import_threshold": 100}


def fast_imports(
    account: Account, monkeypatch: pytest.MonkeyPatch, rows_per_second: float = 100_000.0
) -> None:
    """Imports without the waits a test does not test: the 10-a-minute import requests (APSIS's
    limit, kept by the client's bucket and the sandbox) opened, rows applied fast, reports ready
    at once. The 3-pending limit and the 1-a-second export limit stay."""
    monkeypatch.setattr(apsis_imports, "IMPORT_REQUESTS_PER_MINUTE", 6000)
    service = imports_of(account)
    service.settings.requests_per_minute = 6000
    service.settings.rows_per_second = rows_per_second
    reports_of(account).report_delay_s = 0.05


async def wait_for(
    redis: aioredis.Redis, keys: Keys, sync_id: str, predicate: Any, limit_s: float = 60.0
) -> dict[str, Any]:
    """The sync's record once `predicate(record)` holds."""
    async with asyncio.timeout(limit_s):
        while True:
            record = await control.read_sync(redis, keys, sync_id)
            assert record is not None
            if predicate(record):
                return record
            await asyncio.sleep(0.02)


async def until(predicate: Any, limit_s: float = 60.0, every_s: float = 0.01) -> Any:
    """`predicate()`'s first truthy answer, polled (the sandboxes share the test's loop)."""
    async with asyncio.timeout(limit_s):
        while True:
            got = predicate()
            if got:
                return got
            await asyncio.sleep(every_s)


def worker_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`shopsync worker` as a process of its own, in a process group of its own (as a dyno's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "shopsync.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def walk_children(sync_id: str) -> list[psutil.Process]:
    """Live walk processes of the sync (worker/fullsync/walk_process.py)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if sync_id in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found
