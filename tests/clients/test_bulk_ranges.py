"""Reading a bulk export's JSONL from a checkpoint (worker/shopify_bulk.stream_lines_at): a
`Range` request from the byte offset where storage answers 206, skipping lines where it does not."""

from __future__ import annotations

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from worker.errors import TransientApiError
from worker.shopify_bulk import stream_lines_at

FILE_URL = "https://storage.example/bulk/1.jsonl"
LINES = [b'{"id":1}', b'{"id":22}', b'{"id":333}', b'{"id":4444}']
BODY = b"\n".join(LINES) + b"\n"


async def _read(skip: int = 0, offset: int = 0) -> list[tuple[bytes, int]]:
    async with aiohttp.ClientSession() as session:
        return [item async for item in stream_lines_at(session, FILE_URL, skip, offset)]


def _range_sent(http: aioresponses) -> str | None:
    (call,) = http.requests[("GET", URL(FILE_URL))]
    headers = call.kwargs.get("headers") or {}
    return headers.get("Range")


def _ends() -> list[int]:
    ends, at = [], 0
    for line in LINES:
        at += len(line) + 1
        ends.append(at)
    return ends


async def test_from_the_start_every_line_with_the_offset_past_it(http: aioresponses) -> None:
    http.get(FILE_URL, body=BODY)
    got = await _read()
    assert _range_sent(http) is None
    assert got == list(zip(LINES, _ends(), strict=True))


async def test_a_checkpoint_resumes_with_a_range_where_storage_serves_one(http: aioresponses) -> None:
    offset = _ends()[1]  # past the second line
    headers = {"Content-Range": f"bytes {offset}-{len(BODY) - 1}/{len(BODY)}"}
    http.get(FILE_URL, status=206, body=BODY[offset:], headers=headers)
    got = await _read(skip=2, offset=offset)  # 206: nothing to skip, offsets stay absolute
    assert _range_sent(http) == f"bytes={offset}-"
    assert got == list(zip(LINES[2:], _ends()[2:], strict=True))


async def test_a_server_that_ignores_the_range_has_its_lines_skipped(http: aioresponses) -> None:
    offset = _ends()[1]
    http.get(FILE_URL, status=200, body=BODY)
    got = await _read(skip=2, offset=offset)
    assert got == list(zip(LINES[2:], _ends()[2:], strict=True))


async def test_a_checkpoint_at_the_end_reads_nothing(http: aioresponses) -> None:
    http.get(FILE_URL, status=416, body=b"")
    assert await _read(skip=4, offset=len(BODY)) == []


async def test_a_last_line_without_its_newline_ends_at_the_file_end(http: aioresponses) -> None:
    http.get(FILE_URL, body=BODY.rstrip(b"\n"))
    got = await _read()
    assert got[-1] == (LINES[-1], len(BODY) - 1)


async def test_a_range_from_elsewhere_is_refused_not_read(http: aioresponses) -> None:
    offset = _ends()[1]
    http.get(
        FILE_URL, status=206, body=BODY[3:], headers={"Content-Range": f"bytes 3-{len(BODY) - 1}/{len(BODY)}"}
    )
    with pytest.raises(TransientApiError):
        await _read(skip=2, offset=offset)
