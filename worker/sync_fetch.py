"""The read of the whole customer from Shopify that an update with fields never known calls for.

A tags delta on tags never known, or a trimmed 2025-01 payload on a first sight, leaves fields
that decide membership or attribute values unknown: `fill_from_shopify` reads the customer and
plans it over the state, so those fields are filled before the update itself is planned on top.
`owed_paths` says which unknown paths are worth that read (consent paths are not). A failed read
is not an error here: the caller gets its message and keeps the read owed (see
`worker.sync.FETCH_OWED`); refused protected customer data is (`ProtectedDataError`).
"""

from __future__ import annotations

import structlog

from mappings.installation import Shop
from mappings.normalize import normalize_customer
from mappings.plan import unknown_paths
from mappings.snapshot import CustomerSnapshot
from mappings.state import SyncState
from worker.context import WorkerContext
from worker.errors import ApiError
from worker.ratelimit import WaitTooLongError
from worker.shopify_errors import ProtectedDataError
from worker.sync_plan import plan_update
from worker.sync_writes import MergedWrites

log = structlog.get_logger("worker.sync")

# Paths whose absence makes a fetch of the whole customer worth its Shopify call: the ones that
# decide membership and attribute values. Consent paths are not in it: 2025-01 payloads lack
# them by design and the consent topics (and the hourly reconciliation) bring them.
_CONSENT_PATHS = (
    "email_marketing_consent",
    "sms_marketing_consent",
    "accepts_marketing",
    "marketing_opt_in_level",
)


def consent_only(paths: frozenset[str]) -> frozenset[str]:
    return frozenset(p for p in paths if p.startswith(_CONSENT_PATHS))


def owed_paths(shop: Shop, state: SyncState | None) -> frozenset[str]:
    """Paths never known that a read of the customer would fill (consent is not worth one)."""
    unknown = unknown_paths(shop, state)
    return unknown - consent_only(unknown)


async def fill_from_shopify(
    app: WorkerContext,
    shop: Shop,
    customer_id: int,
    state: SyncState | None,
    force: bool,
    merged: MergedWrites,
) -> tuple[SyncState | None, str | None]:
    """Read the whole customer and plan it over `state` (it fills what was never known): the
    state after it (`state` itself when nothing changed) and the error when the read failed."""
    try:
        full = await _fetch(app, shop, customer_id)
    except _FetchError as exc:
        return state, str(exc)
    if full is None:
        return state, None  # deleted in Shopify: its delete webhook follows
    base = await plan_update(app, shop, state, full, force)
    if base.stale:
        return state, None
    merged.add(base.writes)
    return base.state, None


class _FetchError(Exception):
    """The read of the whole customer failed."""


async def _fetch(app: WorkerContext, shop: Shop, customer_id: int) -> CustomerSnapshot | None:
    """The customer as Shopify has it now; None when Shopify has no such customer. Refused
    protected customer data is not a failed read but a configuration error: it is raised (a
    dead letter naming the missing access), never planned as a customer without those fields."""
    try:
        payload = await app.shopify(shop).get_customer(customer_id)
    except ProtectedDataError:
        raise
    except (ApiError, WaitTooLongError) as exc:
        log.warning("customer_fetch_failed", customer_id=customer_id, error=str(exc))
        raise _FetchError(str(exc)) from None
    return normalize_customer(payload) if payload is not None else None
