"""A bulk result is a stored file, as Shopify's is: generated once, read again from disk, and
served from a byte offset (`Range`, 206) once whole (sandbox/shopify/bulk_files.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from sandbox.shopify import ShopifySandbox, Store
from sandbox.shopify.bulk_files import BulkFiles, serve
from tests.sandbox_shopify.conftest import VERSION
from tests.sandbox_shopify.test_scale_and_bulk import POLL, RUN, graphql


async def _export_url(session: aiohttp.ClientSession, url: str) -> str:
    await graphql(session, url, RUN)
    async with asyncio.timeout(30):
        while True:
            current = (await graphql(session, url, POLL))["data"]["currentBulkOperation"]
            if current["status"] == "COMPLETED":
                return str(current["url"])
            await asyncio.sleep(0.01)


async def _get(
    url: str, headers: dict[str, str] | None = None, first: int | None = None
) -> tuple[int, bytes]:
    """Status and body; with `first`, the reader stops after that many bytes (a walk slice ending)."""
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url, headers=headers) as resp:
        if first is None:
            return resp.status, await resp.read()
        return resp.status, await resp.content.readexactly(first)


async def test_a_result_is_stored_once_and_served_by_byte_range(session: aiohttp.ClientSession) -> None:
    store = Store(seed=5, size=3_000)
    async with ShopifySandbox(store) as running:
        file_url = await _export_url(session, f"{running.url}/admin/api/{VERSION}/graphql.json")
        status, whole = await _get(file_url)
        assert status == 200 and len(whole.splitlines()) == store.customer_count()
        # Whole now: a download from a line's start gets the rest of the file, and only that.
        offset = whole.index(b"\n", len(whole) // 2) + 1
        status, tail = await _get(file_url, {"Range": f"bytes={offset}-"})
        assert status == 206 and tail == whole[offset:]
        status, again = await _get(file_url)
        assert status == 200 and again == whole
        # Store changes after the export do not reach its file.
        await store.create_customer(email="late@example.se")
        assert (await _get(file_url))[1] == whole


LINES = 200_000  # about 20 MB: more than socket buffers hold, so a reader that stops stops the writer


def _line(n: int) -> bytes:
    return b'{"n":%d,"pad":"%s"}' % (n, b"x" * 80)


async def test_a_reader_that_stops_leaves_a_prefix_the_next_download_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = BulkFiles()
    made: list[int] = []

    def lines(start: int) -> Iterator[tuple[int, bytes]]:
        made.append(start)
        for n in range(start, LINES):
            yield n + 1, _line(n)

    async def download(request: web.Request) -> web.StreamResponse:
        return await serve(request, files.of(1), lines)

    app = web.Application()
    app.router.add_get("/1.jsonl", download)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/1.jsonl"
    try:
        status, head = await _get(url, first=5_000)
        assert status == 200
        stored = files.of(1)
        async with asyncio.timeout(10), stored.extending:  # the server noticed the reader is gone
            pass
        assert not stored.whole and 0 < stored.size < len(b"".join(_line(n) + b"\n" for n in range(LINES)))
        # Not whole: a range is ignored (200 and every line); the stored part comes from disk and
        # only the rest is generated.
        status, body = await _get(url, {"Range": "bytes=10-"})
        assert status == 200 and body.startswith(head)
        assert body == b"".join(_line(n) + b"\n" for n in range(LINES))
        assert len(made) == 2 and made[0] == 0 and made[1] > 0  # generated on from where it stopped
        assert stored.whole
        status, tail = await _get(url, {"Range": f"bytes={len(body) - len(_line(LINES - 1)) - 1}-"})
        assert status == 206 and tail == _line(LINES - 1) + b"\n"
        # A reader gone mid-way is the normal end of a walk slice, not a server error to log.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        await runner.cleanup()


async def test_downloads_at_once_each_get_every_line(session: aiohttp.ClientSession) -> None:
    store = Store(seed=6, size=4_000)
    async with ShopifySandbox(store) as running:
        file_url = await _export_url(session, f"{running.url}/admin/api/{VERSION}/graphql.json")
        bodies = await asyncio.gather(*(_get(file_url) for _ in range(3)))
    assert {status for status, _ in bodies} == {200}
    assert len({body for _, body in bodies}) == 1
    assert len(bodies[0][1].splitlines()) == 4_000
