"""The drift audit's reads of APSIS one profile at a time (`GET .../attributes`, `GET /v2/.../consents`).

The whole read of a store when the audit does not use consent reports, and what a report cannot
answer when it does (`worker.audit_apsis_bulk`). Every call draws from the shared rate limiter
(`ApsisClient`): 100 requests/s per account, 10/s per profile, whatever else the pool does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from mappings.audit import Held
from mappings.consent import ApsisConsent
from mappings.installation import Shop
from mappings.state import SyncState
from worker.apsis_client import CONSENT_SOURCE
from worker.context import WorkerContext

CONCURRENCY = 8  # customers read from APSIS at once (each read still waits for the limiter)


async def section_consents(
    app: WorkerContext, shop: Shop, customer_id: int, section: str
) -> dict[tuple[str, str], ApsisConsent]:
    """The profile's consents in the section, by (channel, topic)."""
    answer = await app.apsis(shop).read_consents(shop.apsis.keyspace, str(customer_id), section)
    return {
        pair: ApsisConsent(kind, modified_at, source == CONSENT_SOURCE)
        for pair, (kind, modified_at, source) in answer.consents.items()
    }


async def read_held(
    app: WorkerContext, shop: Shop, customer_id: int, expected: SyncState | None
) -> Held | None:
    """What APSIS holds of the customer, read only where the comparison needs it; None: nothing
    to compare (a customer in no section who was never synced)."""
    if expected is None or not expected.sections:
        stored = await app.customers.load(shop.domain, customer_id)
        if stored.state is None:
            return None
        return Held(exists=await profile_exists(app, shop, customer_id))
    apsis = app.apsis(shop)
    keyspace, key = shop.apsis.keyspace, str(customer_id)
    attributes: dict[str, Mapping[str, Any]] = {}
    consents: dict[str, dict[tuple[str, str], ApsisConsent]] = {}
    for section in shop.sections:
        s = section.discriminator
        if s not in expected.sections:
            continue
        got = await apsis.get_attributes(keyspace, key, s)
        if got is None:
            return Held(exists=False)
        attributes[s] = got
        if section.consents:
            consents[s] = await section_consents(app, shop, customer_id, s)
    return Held(exists=True, attributes=attributes, consents=consents)


async def profile_exists(app: WorkerContext, shop: Shop, customer_id: int) -> bool:
    if not shop.sections:
        return False
    section = shop.sections[0].discriminator
    got = await app.apsis(shop).get_attributes(shop.apsis.keyspace, str(customer_id), section)
    return got is not None


class ProfileReads:
    """The per-profile read of a chunk of customers, `CONCURRENCY` customers at once."""

    name = "profiles"

    def __init__(self, app: WorkerContext, shop: Shop) -> None:
        self.app, self.shop = app, shop
        self.gate = asyncio.Semaphore(CONCURRENCY)

    async def held(self, items: Sequence[tuple[int, SyncState | None]]) -> list[Held | None]:
        async def one(cid: int, expected: SyncState | None) -> Held | None:
            async with self.gate:
                return await read_held(self.app, self.shop, cid, expected)

        return list(await asyncio.gather(*(one(cid, expected) for cid, expected in items)))

    async def exists(self, customer_id: int) -> bool:
        return await profile_exists(self.app, self.shop, customer_id)

    def known_keys(self) -> list[str]:
        """Redis hashes whose fields are profile keys APSIS holds (none: nothing staged)."""
        return []

    async def close(self) -> None:
        return None
