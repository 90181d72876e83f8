"""The APSIS writes of one apply: folded into the fewest requests, then sent.

`MergedWrites` collects the writes of every plan an apply folds (and the staged writes of an
earlier apply cut off before it saved) so a burst becomes one attribute patch per section and
one consent write per topic, the last write for a key counting; `consents_for` tells the
email-change carry-over what this apply planned for an address and has not sent yet.
`send_writes` sends them in order, counting and logging each kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from core.logging import mask_email, mask_phone
from mappings.installation import Shop
from mappings.writes import AddressList, AttributePatch, ConsentType, ConsentWrite, ProfileDelete, Write
from worker.context import WorkerContext

log = structlog.get_logger("worker.sync")


class MergedWrites:
    """Writes of several plans folded into the fewest requests with the same end result."""

    def __init__(self) -> None:
        self._order: list[tuple[Any, ...]] = []
        self._patches: dict[tuple[str, str], dict[str, Any]] = {}
        self._others: dict[tuple[Any, ...], Write] = {}

    def add(self, writes: Sequence[Write]) -> None:
        for write in writes:
            if isinstance(write, AttributePatch):
                key: tuple[Any, ...] = ("patch", write.section, write.profile_key)
                self._patches.setdefault((write.section, write.profile_key), {}).update(write.body)
            elif isinstance(write, ConsentWrite):
                key = (
                    "consent",
                    write.channel,
                    write.address,
                    write.section,
                    write.consent_list,
                    write.topic,
                )
                self._others[key] = write
            else:
                key = ("delete", write.keyspace, write.profile_key)
                self._others[key] = write
            if key in self._order:
                self._order.remove(key)  # the last write for a key is the one that counts
            self._order.append(key)

    def consents_for(self, entry: AddressList) -> dict[str, ConsentType]:
        """Topic -> the last consent planned for one consent list of one address."""
        return {
            key[5]: write.type
            for key, write in self._others.items()
            if isinstance(write, ConsentWrite) and key[1:5] == tuple(entry)
        }

    def writes(self) -> list[Write]:
        out: list[Write] = []
        for key in self._order:
            if key[0] == "patch":
                out.append(AttributePatch(key[1], self._patches[(key[1], key[2])], key[2]))
            else:
                out.append(self._others[key])
        return out


async def send_writes(app: WorkerContext, shop: Shop, customer_id: int, writes: Sequence[Write]) -> int:
    if not writes:
        return 0
    apsis = app.apsis(shop)
    keyspace = shop.apsis.keyspace
    for write in writes:
        if isinstance(write, AttributePatch):
            await apsis.patch_attributes(
                keyspace, write.profile_key or str(customer_id), write.section, write.body
            )
            app.metrics.inc("shopsync_apsis_writes_total", {"kind": "attributes"})
        elif isinstance(write, ConsentWrite):
            await apsis.write_consent(
                write.channel, write.address, write.section, write.consent_list, write.topic, write.type
            )
            app.metrics.inc("shopsync_apsis_writes_total", {"kind": "consent"})
            log.info(
                "consent_written",
                customer_id=customer_id,
                address=mask_email(write.address) if "@" in write.address else mask_phone(write.address),
                consent_topic=write.topic,
                consent=write.type,
            )
        elif isinstance(write, ProfileDelete):
            await apsis.delete_profile(write.keyspace, write.profile_key)
    return len(writes)
