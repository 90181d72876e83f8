"""Where a full sync's customers come from: REST pages from a saved cursor, or a bulk export's lines.

Both are resumable: a REST walk restarts from the `page_info` of the next page (saved with the
batch that holds the previous one), a bulk walk re-reads the export's file and skips the lines
already batched. Customers are trimmed to the fields the installation reads, so the batches
waiting in Redis stay small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from mappings.installation import Shop
from mappings.plan import tracked_paths
from worker.errors import error_from_response
from worker.shopify_client import CUSTOMERS, MAX_PAGE_SIZE, ShopifyClient, next_page_info

Json = dict[str, Any]
# Always needed beside the tracked paths' roots: identity, ordering, and every consent form
# (versions differ in which one they carry; mappings derive the others).
_CORE_FIELDS = (
    "id",
    "updated_at",
    "created_at",
    "email",
    "phone",
    "tags",
    "email_marketing_consent",
    "sms_marketing_consent",
    "accepts_marketing",
    "accepts_marketing_updated_at",
    "marketing_opt_in_level",
)


def customer_fields(shop: Shop) -> tuple[str, ...]:
    """The REST `fields` a full sync asks for: the roots of every path the installation reads."""
    roots = {path.partition(".")[0] for path in tracked_paths(shop)}
    return tuple(sorted(roots.union(_CORE_FIELDS)))


def compact(customer: Json, fields: tuple[str, ...]) -> Json:
    """Only the fields the plan reads (Shopify may ignore `fields` on some routes/versions)."""
    return {k: v for k, v in customer.items() if k in fields}


async def customer_page(
    client: ShopifyClient,
    page_info: str | None,
    *,
    updated_at_min: str | None,
    fields: tuple[str, ...],
    limit: int = MAX_PAGE_SIZE,
) -> tuple[list[Json], str | None]:
    """One page of customers and the `page_info` of the next (None at the end).

    The client's page iterator hides the cursor; a resumable walk needs it, so this goes through
    the client's request path (same bucket, feedback, retries) one page at a time."""
    query: dict[str, Any] = {"limit": limit, "fields": ",".join(fields)}
    if page_info is not None:
        query["page_info"] = page_info  # with page_info Shopify takes only limit and fields
    elif updated_at_min is not None:
        query["updated_at_min"] = updated_at_min
    answer = await client._request("GET", CUSTOMERS, query=query)
    assert answer is not None
    page = [compact(c, fields) for c in answer.json()["customers"]]
    return page, next_page_info(answer.headers.get("Link"))


async def bulk_lines(client: ShopifyClient, url: str, skip: int) -> AsyncIterator[bytes]:
    """The export's lines after the first `skip`, as raw bytes (skipped lines are not parsed)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
    async with client.session.get(url, timeout=timeout) as response:
        if response.status >= 400:
            raise error_from_response("shopify", response.status, await response.read(), route="bulk-jsonl")
        seen = 0
        pending = b""
        async for chunk in response.content.iter_chunked(1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                seen += 1
                if seen > skip:
                    yield line
        if pending.strip():
            seen += 1
            if seen > skip:
                yield pending
