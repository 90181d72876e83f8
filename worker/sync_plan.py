"""Planning one update for a customer, with what the pure planner needs from APSIS on an email change.

When an update moves a customer to a new email address or phone number, `mappings.plan` carries
the old address's opted-in topics over to the new one; `plan_update` asks APSIS which topics the
old address has (consent given outside Shopify moves too), corrected by the writes this apply
planned and has not sent yet, which win for their topics. Then it calls `plan_sync`.
"""

from __future__ import annotations

from mappings.installation import Shop
from mappings.plan import Plan, needs_old_address_topics, plan_sync
from mappings.snapshot import CustomerSnapshot, TagsChange
from mappings.state import SyncState
from mappings.writes import OPT_IN, AddressList
from worker.context import WorkerContext
from worker.sync_writes import MergedWrites


async def plan_update(
    app: WorkerContext,
    shop: Shop,
    state: SyncState | None,
    update: CustomerSnapshot | TagsChange,
    force: bool,
    unsent: MergedWrites,
) -> Plan:
    """Plan `update` over `state`; `unsent`: the writes this apply planned so far (not sent yet)."""
    needed = needs_old_address_topics(shop, state, update)
    old_topics: dict[AddressList, list[str]] = {}
    if needed:
        apsis = app.apsis(shop)
        for entry in needed:
            # Consent given outside Shopify (forms, other integrations) moves with the address
            # too, so APSIS is asked. But APSIS has not seen what this apply planned before this
            # update (an opt-out of the old address folded just before the change, staged writes
            # of a cut-off apply): those win for their topics. Writes already sent do not: APSIS
            # knows them, and anything newer there (a form opt-in after our opt-out) is right.
            remote = await apsis.opted_in_topics(
                entry.channel, entry.address, entry.section, entry.consent_list
            )
            planned = unsent.consents_for(entry)
            kept = {t for t in remote if planned.get(t, OPT_IN) == OPT_IN}
            old_topics[entry] = sorted(kept | {t for t, kind in planned.items() if kind == OPT_IN})
    return plan_sync(shop, state, update, old_address_topics=old_topics, force=force)
