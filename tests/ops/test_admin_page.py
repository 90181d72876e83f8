"""The /admin status page: login, auth, and in headless Chromium the queue table and progress bars."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from core.keys import Keys
from mappings.installation import Installations
from receiver.app import create_app
from shopsync.devredis import free_port
from tests.ops.chromium import Browser, ensure_chromium
from worker.ratelimit import Bucket, RateLimiter

TOKEN = "s3cret-admin-token"
SHOP = "demo-store.myshopify.com"


@pytest.fixture
async def receiver_url(
    redis_url: str, keys: Keys, redis: aioredis.Redis, demo_installations: Installations
) -> AsyncIterator[str]:
    app = create_app(demo_installations, aioredis.Redis.from_url(redis_url), keys=keys, admin_token=TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def seed(redis: aioredis.Redis, keys: Keys, seen: int) -> None:
    now = time.time()
    now_ms = int(now * 1000)
    await redis.zadd(keys.realtime_queue, {"job-a": now_ms - 5000, "job-b": now_ms - 1000})
    await redis.zadd(keys.workers, {"host:101": now, "host:102": now})
    await redis.zadd(keys.full_syncs, {"fs-demo": now - 60})
    record = {
        "sync_id": "fs-demo", "shop": SHOP, "state": "running", "total": 120, "seen": seen,
        "synced": seen - 2, "unchanged": 1, "skipped": 1, "failed": 0, "started_at": now - 60,
    }  # fmt: skip
    await redis.hset(
        keys.full_sync_record("fs-demo"), mapping={k: orjson.dumps(v) for k, v in record.items()}
    )  # type: ignore[misc]
    failure = {"at": now - 30, "job_id": "job-x", "function": "sync_customer", "try": 2, "error": "boom <b>"}
    await redis.zadd(keys.failures, {orjson.dumps(failure): now - 30})
    await redis.hincrbyfloat(keys.metrics, 'shopsync_jobs_total{function="sync_customer",outcome="ok"}', 10)  # type: ignore[misc]


async def test_login_cookie_and_token_checks(receiver_url: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{receiver_url}/admin") as r:
            assert r.status == 200 and 'id="login-form"' in await r.text()
        async with session.post(f"{receiver_url}/admin/login", data={"token": "nope"}) as r:
            assert r.status == 401 and "Wrong token." in await r.text()
        async with session.get(f"{receiver_url}/admin/status") as r:
            assert r.status == 401
        async with session.post(
            f"{receiver_url}/admin/login", data={"token": TOKEN}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
        async with session.get(f"{receiver_url}/admin") as r:
            assert r.status == 200 and 'id="queues"' in await r.text()
        async with session.get(f"{receiver_url}/admin/status") as r:
            assert r.status == 200 and "jobs_total" in await r.json()
        async with session.get(f"{receiver_url}/admin/static/admin.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"{receiver_url}/admin", headers=headers) as r:
            assert r.status == 200 and 'id="queues"' in await r.text()


async def test_admin_page_disabled_without_a_token(demo_installations: Installations, redis_url: str) -> None:
    app = create_app(demo_installations, aioredis.Redis.from_url(redis_url), admin_token=None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/admin") as r:
            assert r.status == 503
    finally:
        await runner.cleanup()


@pytest.mark.browser
async def test_status_page_in_headless_chromium(
    receiver_url: str, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    binary = ensure_chromium()
    await seed(redis, keys, seen=30)
    async with Browser(binary) as browser:
        await browser.goto(f"{receiver_url}/admin")
        await browser.wait_for("!!document.querySelector('#login-form')")
        await browser.evaluate(
            f"document.querySelector('#token').value = {TOKEN!r}; document.querySelector('#login-form').submit(); 1"
        )
        # Signed in: the page polls /admin/status and draws the queue table and the progress bar.
        await browser.wait_for(f"document.querySelectorAll('#queues tbody tr').length === {len(keys.queues)}")
        queue = await browser.evaluate(
            "[...document.querySelectorAll('#queues tbody tr[data-queue=realtime] td')].map(td => td.textContent)"
        )
        assert queue[0] == f"{keys.realtime_queue}" and queue[1:4] == ["2", "0", "0"]
        bar = "document.querySelector('[data-sync-id=fs-demo] [role=progressbar]')"
        assert await browser.wait_for(f"{bar} && {bar}.getAttribute('aria-valuenow')") == "25.0"
        assert await browser.evaluate("document.getElementById('workers').textContent") == "2"
        failure = await browser.evaluate(
            "document.querySelector('#recent-failures tbody td.error').textContent"
        )
        assert failure == "boom <b>"  # shown as text, never as markup
        assert "shopsync_admin" not in await browser.evaluate("document.cookie")  # HttpOnly

        # It refreshes itself: progress and throughput follow Redis without a reload.
        await seed(redis, keys, seen=60)
        await redis.hincrbyfloat(
            keys.metrics, 'shopsync_jobs_total{function="sync_customer",outcome="ok"}', 40
        )  # type: ignore[misc]
        await browser.wait_for(f"{bar}.getAttribute('aria-valuenow') === '50.0'")
        await browser.wait_for("document.getElementById('throughput').textContent !== '–'")
        # Per shop: a row with its rate-limit use; a limiter as level / burst, pace, wait, when;
        # a shop that needs approval, a notice with the way to connect it.
        await RateLimiter(redis, keys).acquire_bucket(Bucket("apsis:sandbox-client", 95, 1, kind="apsis"))
        await redis.hset(keys.needs_approval, SHOP, "refresh refused: invalid_grant")  # type: ignore[misc]
        audit = {
            "at": time.time() - 120,
            "customers": 3000,
            "missing": 1,
            "extra": 0,
            "attribute": 2,
            "consent": 0,
        }
        await redis.set(keys.audit(SHOP), orjson.dumps(audit))
        await redis.hset(keys.suppressed(SHOP), "42", "email")  # type: ignore[misc]
        row = f"document.querySelector('#shops tbody tr[data-shop=\"{SHOP}\"]')"
        await browser.wait_for(f"{row} && {row}.textContent.includes('apsis 1/1 @95/s')")
        await browser.wait_for(f"{row}.textContent.includes('2m ago: 3000 customers, 3 difference(s)')")
        cells = await browser.evaluate(f"[...{row}.querySelectorAll('td')].map(td => td.textContent)")
        assert cells[-1] == "1"  # one profile APSIS suppresses
        limiter = await browser.evaluate(
            "[...document.querySelectorAll('#limiters tr[data-bucket=\"apsis:sandbox-client\"] td')]"
            ".map(td => td.textContent)"
        )
        assert limiter[1:4] == ["1.0 / 1", "95/s", "0.00s"] and limiter[4].endswith("s ago")
        # A sync through APSIS profile imports shows where its files are.
        imported = {
            "sync_id": "fs-import", "shop": SHOP, "state": "running", "total": 50_000, "seen": 50_000,
            "started_at": time.time() - 30, "path": "import",
            "import_files": {"built": 4, "uploaded": 3, "processing": 1, "completed": 2, "failed": 0},
            "import_rows": 37_500, "import_rows_resent": 12, "import_rows_refused": 3,
        }  # fmt: skip
        await redis.hset(
            keys.full_sync_record("fs-import"), mapping={k: orjson.dumps(v) for k, v in imported.items()}
        )  # type: ignore[misc]
        await redis.zadd(keys.full_syncs, {"fs-import": time.time()})
        phase = await browser.wait_for(
            "document.querySelector('[data-sync-id=fs-import] .import-phase')?.textContent"
        )
        assert phase == (
            "import: files 4 built, 3 uploaded, 1 processing, 2 completed, 0 failed"
            " · rows 37500 imported, 12 re-sent, 3 refused"
        )
        notice = await browser.wait_for(
            f"document.querySelector('#needs-approval [data-shop=\"{SHOP}\"]')?.textContent"
        )
        assert "needs approval (refresh refused: invalid_grant)" in notice
        shot = await browser.screenshot(tmp_path / "admin.png")
        assert shot.stat().st_size > 10_000
        if os.environ.get("SHOPSYNC_SCREENSHOTS"):
            (Path(os.environ["SHOPSYNC_SCREENSHOTS"]) / "admin.png").write_bytes(shot.read_bytes())
