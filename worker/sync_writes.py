"""The APSIS writes of one apply: folded into the fewest requests, then sent.

`MergedWrites` collects the writes of every plan an apply folds (and the staged writes of an
earlier apply cut off before it saved) so a burst becomes one attribute patch per section and
one consent write per profile, section, channel and topic, the last write for a key counting.
`send_writes` sends them in order, counting and logging each kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from mappings.installation import Shop
from mappings.writes import OPT_IN, AttributePatch, ConsentWrite, ProfileDelete, Write
from worker.context import WorkerContext

log = structlog.get_logger("worker.sync")
# The `reason` APSIS keeps beside each consent (its consent log shows it).
_REASONS = {OPT_IN: "Subscribed to marketing in Shopify", "opt-out": "Unsubscribed from marketing in Shopify"}


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
                key = ("consent", write.profile_key, write.section, write.channel, write.topic)
                self._others[key] = write
            else:
                key = ("delete", write.keyspace, write.profile_key)
                self._others[key] = write
            if key in self._order:
                self._order.remove(key)  # the last write for a key is the one that counts
            self._order.append(key)

    def writes(self) -> list[Write]:
        """In order, except that attribute patches go before consent writes (between deletes): a
        consent needs the profile, and the patch is what creates it."""
        out: list[Write] = []
        patches: list[Write] = []
        consents: list[Write] = []
        for key in self._order:
            if key[0] == "patch":
                patches.append(AttributePatch(key[1], self._patches[(key[1], key[2])], key[2]))
            elif key[0] == "consent":
                consents.append(self._others[key])
            else:
                out.extend([*patches, *consents, self._others[key]])
                patches, consents = [], []
        return [*out, *patches, *consents]


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
            outcome = await apsis.write_consent(
                keyspace,
                write.profile_key or str(customer_id),
                write.section,
                write.channel,
                write.topic,
                write.type,
                reason=_REASONS[write.type],
            )
            app.metrics.inc("shopsync_apsis_writes_total", {"kind": "consent"})
            app.metrics.inc("shopsync_apsis_consents_total", {"type": write.type, "outcome": outcome})
            log.info(
                "consent_written",
                customer_id=customer_id,
                consent_channel=write.channel,
                consent_topic=write.topic,
                consent=write.type,
                outcome=outcome,
            )
        elif isinstance(write, ProfileDelete):
            await apsis.delete_profile(write.keyspace, write.profile_key)
    return len(writes)
