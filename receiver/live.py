"""The receiver's installations, replaceable while it runs (a reload of the installations file).

Every route reads the shops through one `LiveInstallations` (the webhook handler binds it once
and looks a shop up per request), so swapping `current` is one assignment on the event loop: a
request sees either the old set of shops or the new one, never a mix. A webhook of a shop that a
reload removed answers 401 like any unknown shop (Shopify retries it for hours: put the shop back
and its deliveries come in), and its jobs already queued stay in Redis, parked by the workers.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from mappings.installation import Installations, Shop

log = structlog.get_logger("receiver")


class LiveInstallations:
    def __init__(self, installations: Installations) -> None:
        self.current = installations

    @property
    def shops(self) -> Mapping[str, Shop]:
        return self.current.shops

    @property
    def source(self) -> str:
        return self.current.source

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.current.warnings

    def get(self, domain: str) -> Shop | None:
        return self.current.get(domain)

    def replace(self, new: Installations) -> dict[str, list[str]]:
        old = self.current.shops
        change = {
            "added": sorted(set(new.shops) - set(old)),
            "removed": sorted(set(old) - set(new.shops)),
            "changed": sorted(d for d in set(old) & set(new.shops) if old[d] != new.shops[d]),
        }
        self.current = new
        for warning in new.warnings:
            log.warning("installations_warning", detail=warning)
        log.info("installations_reloaded", shops=len(new.shops), **change)
        for domain in change["removed"]:
            log.warning(
                "shop_removed",
                shop=domain,
                detail="its webhooks answer 401 until it is back; its queued jobs stay parked",
            )
        return change
