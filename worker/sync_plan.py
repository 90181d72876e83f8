"""Planning one update for a customer: the pure planner, given what it needs from APSIS.

Under Consent 2.0 an email or phone change needs nothing from APSIS before planning (consent stays
on the profile); what the plan needs is which attribute each consent channel sends to, per section
(`worker.sync_consents.address_attributes`).
"""

from __future__ import annotations

from mappings.installation import Shop
from mappings.plan import Plan, plan_sync
from mappings.snapshot import CustomerSnapshot, TagsChange
from mappings.state import SyncState
from worker.context import WorkerContext
from worker.sync_consents import address_attributes


async def plan_update(
    app: WorkerContext,
    shop: Shop,
    state: SyncState | None,
    update: CustomerSnapshot | TagsChange,
    force: bool,
) -> Plan:
    """Plan `update` over `state`."""
    versions = await address_attributes(app, shop)
    return plan_sync(shop, state, update, address_attributes=versions, force=force)
