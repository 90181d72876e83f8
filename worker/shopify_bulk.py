"""Whole-store exports through Shopify bulk operations: start, poll, stream the JSONL by line.

One `bulkOperationRunQuery` starts an export, cheap `node(id:)` polls follow it, and the result
is one JSONL file at a signed URL, read as a stream (a line at a time: a store of millions never
sits in memory; the URL is pre-signed storage, no access token goes with it).

Shopify runs up to `max_bulk_operations(version)` bulk queries per app and shop at once (5 from
2026-01, one before). With `slots` (`worker.shopify_bulk_slots.BulkSlots`, the pool's lease of
them in Redis) a start first waits up to `slot_wait_s` for a free slot, the slot passes to the
operation once Shopify accepted it, each poll renews it and a terminal status releases it. No
slot within the wait, or Shopify refusing anyway (`OPERATION_IN_PROGRESS`/`LIMIT_REACHED`: an
operation the pool does not know of, such as one whose starter died), is the transient
`BulkOperationBusyError` (retry later), never a silent skip.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from core.logging import get_logger
from worker.errors import PermanentApiError, TransientApiError, error_from_response
from worker.shopify_bulk_slots import BulkSlots
from worker.shopify_errors import ROUTE, UserErrorsError
from worker.shopify_graphql import ShopifyConnection, graphql
from worker.shopify_queries import BULK_OPERATION_QUERY, BULK_RUN_MUTATION
from worker.shopify_versions import max_bulk_operations

log = get_logger(__name__)

_DONE = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
_BUSY = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})


class BulkOperationBusyError(TransientApiError):
    """Shopify already runs as many bulk queries for this app and shop as the version allows."""


SLOT_WAIT_S = 60.0  # a start waits this long for a free slot, then is retried later


def _busy(conn: ShopifyConnection, detail: str) -> BulkOperationBusyError:
    limit = max_bulk_operations(conn.store.graphql_api_version)
    return BulkOperationBusyError(
        "shopify", 200, "bulk operation busy", f"{detail} (at most {limit} at once)", 10.0, route=ROUTE
    )


async def run_bulk_query(
    conn: ShopifyConnection,
    query: str,
    *,
    slots: BulkSlots | None = None,
    slot_wait_s: float = SLOT_WAIT_S,
) -> str:
    """Start a bulk export of `query`; the operation's id (`gid://shopify/BulkOperation/...`).
    With `slots`, one of the shop's bulk slots is taken first (waiting up to `slot_wait_s`)."""
    holder = f"starting:{uuid.uuid4().hex}"
    if slots is not None and not await slots.wait(holder, slot_wait_s):
        raise _busy(conn, f"all {slots.limit} bulk slots of the shop held by the pool for {slot_wait_s:g} s")
    try:
        data = await graphql(conn, BULK_RUN_MUTATION, {"query": query})
        result = data.get("bulkOperationRunQuery") or {}
        user_errors = result.get("userErrors") or []
        if user_errors:
            codes = {str(e.get("code") or "") for e in user_errors}
            message = "; ".join(str(e.get("message")) for e in user_errors)
            if codes & _BUSY or "already in progress" in message:
                raise _busy(conn, message)
            raise UserErrorsError("bulkOperationRunQuery", user_errors)
        operation_id = str((result.get("bulkOperation") or {})["id"])
    except BaseException:
        if slots is not None:
            await slots.release(holder)
        raise
    if slots is not None:
        await slots.hand_over(holder, operation_id)
    log.info("shopify_bulk_started", shop=conn.store.domain, operation=operation_id)
    return operation_id


async def bulk_operation(
    conn: ShopifyConnection, operation_id: str, *, slots: BulkSlots | None = None
) -> dict[str, Any] | None:
    """The operation's state: `status`, `objectCount`, `url` (when COMPLETED), `errorCode`...
    With `slots`, a running operation's lease is renewed and an ended one's released."""
    data = await graphql(conn, BULK_OPERATION_QUERY, {"id": operation_id})
    node = data.get("node")
    state = dict(node) if isinstance(node, dict) else None
    if slots is not None:
        if state is None or str(state.get("status")) in _DONE:
            await slots.release(operation_id)
        else:
            await slots.renew(operation_id)
    return state


async def wait_for_bulk_operation(
    conn: ShopifyConnection,
    operation_id: str,
    *,
    poll_s: float = 2.0,
    timeout_s: float = 6 * 3600,
    on_progress: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    slots: BulkSlots | None = None,
) -> dict[str, Any]:
    """Poll until the operation ends; its final state. FAILED/CANCELED/EXPIRED raise."""
    deadline = time.monotonic() + timeout_s
    delay = min(0.25, poll_s)
    while True:
        state = await bulk_operation(conn, operation_id, slots=slots)
        if state is None:
            raise PermanentApiError(
                "shopify", 404, "bulk operation", f"{operation_id} not found", route=ROUTE
            )
        if on_progress is not None:
            maybe = on_progress(state)
            if maybe is not None:
                await maybe
        status = str(state.get("status"))
        if status == "COMPLETED":
            return state
        if status in _DONE:
            raise PermanentApiError(
                "shopify",
                200,
                f"bulk operation {status.lower()}",
                str(state.get("errorCode") or ""),
                route=ROUTE,
            )
        if time.monotonic() > deadline:
            raise TransientApiError(
                "shopify", None, "bulk operation", "still running at the timeout", route=ROUTE
            )
        await asyncio.sleep(delay)
        delay = min(poll_s, delay * 2)  # small exports finish in a moment; big ones are polled calmly


async def stream_lines(session: aiohttp.ClientSession, url: str, skip: int = 0) -> AsyncIterator[bytes]:
    """The export's non-empty lines after the first `skip`, as raw bytes (skipped ones unparsed)."""
    async for line, _ in stream_lines_at(session, url, skip):
        yield line


async def stream_lines_at(
    session: aiohttp.ClientSession, url: str, skip: int = 0, offset: int = 0
) -> AsyncIterator[tuple[bytes, int]]:
    """The export's non-empty lines after the first `skip`, each with the byte offset just past
    it (a checkpoint to resume from). Given `offset` (a line's start, from such a checkpoint), the
    download starts there with a `Range` request: the file lives in cloud storage, which answers
    206 with the bytes from there, so a resumed walk does not download and split again what it
    read. A server that answers 200 instead sends the whole file, and the first `skip` lines are
    skipped as before."""
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
    headers = {"Range": f"bytes={offset}-"} if offset > 0 else None
    async with session.get(url, timeout=timeout, headers=headers) as response:
        if response.status == 416:  # the offset is the file's end: nothing is left to read
            return
        if response.status >= 400:
            raise error_from_response("shopify", response.status, await response.read(), route="bulk-jsonl")
        ranged = response.status == 206
        if ranged and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            # Lines read from anywhere else would be cut: try again rather than read them.
            raise TransientApiError(
                "shopify", 206, "Partial Content", f"a range other than bytes {offset}-", route="bulk-jsonl"
            )
        position = offset if ranged else 0
        skip = 0 if ranged else skip
        seen = 0
        pending = b""
        async for chunk in response.content.iter_chunked(1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                position += len(line) + 1
                if line.strip():
                    seen += 1
                    if seen > skip:
                        yield line, position
        if pending.strip() and seen + 1 > skip:
            yield pending, position + len(pending)


async def stream_jsonl(conn: ShopifyConnection, url: str) -> AsyncIterator[dict[str, Any]]:
    """The export's objects one line at a time, whatever the file size or a line's length."""
    async for line in stream_lines(conn.session, url):
        yield orjson.loads(line)


async def iter_bulk(
    conn: ShopifyConnection,
    query: str,
    *,
    poll_s: float = 2.0,
    slots: BulkSlots | None = None,
    slot_wait_s: float = SLOT_WAIT_S,
) -> AsyncIterator[dict[str, Any]]:
    """Start an export, wait for it, stream its lines (child lines carry `__parentId`)."""
    operation_id = await run_bulk_query(conn, query, slots=slots, slot_wait_s=slot_wait_s)
    state = await wait_for_bulk_operation(conn, operation_id, poll_s=poll_s, slots=slots)
    url = state.get("url")
    if not url:  # an empty store exports no file
        return
    async for line in stream_jsonl(conn, str(url)):
        yield line
