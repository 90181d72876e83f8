"""Where a full sync's customers come from: GraphQL pages from a saved cursor, or a bulk export's lines.

Both are resumable: a page walk restarts from the cursor of the next page (saved with the
batch that holds the previous one), a bulk walk re-reads the export's file and skips the lines
already batched. Customers are trimmed to the fields the installation reads, so the batches
waiting in Redis stay small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mappings.installation import Shop
from mappings.plan import tracked_paths
from worker.shopify_bulk import stream_lines_at
from worker.shopify_client import ShopifyClient
from worker.shopify_cost import MAX_PAGE_SIZE

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
    """The (REST-shaped) fields a full sync keeps: the roots of every path the installation reads."""
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
    """One page of customers (REST-shaped, trimmed) and the cursor of the next (None at the end).

    The filter goes with every page (a GraphQL cursor continues the same query)."""
    page, cursor = await client.customer_page(page_info, updated_at_min=updated_at_min, limit=limit)
    return [compact(c, fields) for c in page], cursor


def bulk_lines(
    client: ShopifyClient, url: str, skip: int, offset: int = 0
) -> AsyncIterator[tuple[bytes, int]]:
    """The export's lines after the first `skip` (from byte `offset` where storage allows: a
    `Range` request), as raw bytes with the offset past each (skipped lines are not parsed)."""
    return stream_lines_at(client.session, url, skip, offset)
