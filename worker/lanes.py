"""Which shop and which lane the running job works for, as context variables.

`run_job` (worker/runtime.py) sets both for every job: the lane from its queue (`bulk` for the
full-sync queue, `realtime` for the rest) and the shop when the job names one; a full-sync batch
sets its shop once it has read its sync's record. Code far below (the rate limiter's per-shop
share of an APSIS account, the per-shop backoff's view of API answers) reads them instead of
having the shop passed through every call. Tasks started inside a job inherit both.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

Lane = Literal["realtime", "bulk"]

SHOP: ContextVar[str | None] = ContextVar("shopsync_shop", default=None)
LANE: ContextVar[Lane] = ContextVar("shopsync_lane", default="realtime")


def enter(shop: str | None, lane: Lane | None = None) -> None:
    """Set the shop (when given) and the lane (when given) for the running task."""
    if shop is not None:
        SHOP.set(shop)
    if lane is not None:
        LANE.set(lane)


def participant() -> str | None:
    """`shop/lane` of the running task, or None outside a shop's job."""
    shop = SHOP.get()
    return None if shop is None else f"{shop}/{LANE.get()}"


# --- shops parked by their backoff (worker/shop_backoff.py keeps this view fresh) ---------------

# Shop -> (until, reason), epoch seconds: this process's view of the pool's backoff records.
_PARKED: dict[str, tuple[float, str]] = {}


class ShopParkedError(ConnectionError):
    """The shop backs off (its Shopify or APSIS kept failing): nothing is sent for it until the
    backoff lapses. Transient (a `ConnectionError`): whatever catches it retries later; `run_job`
    parks the job instead (worker/shop_backoff.py)."""

    def __init__(self, shop: str, reason: str, until: float) -> None:
        self.shop, self.reason, self.until = shop, reason, until
        super().__init__(f"shop {shop} backs off until {until:.0f}: {reason}")


def set_parked(view: dict[str, tuple[float, str]]) -> None:
    _PARKED.clear()
    _PARKED.update(view)


def parked(shop: str | None, now: float) -> tuple[float, str] | None:
    """(until, reason) while `shop` backs off, else None."""
    if shop is None:
        return None
    entry = _PARKED.get(shop)
    return entry if entry is not None and entry[0] > now else None


def probing(shop: str, now: float) -> bool:
    """The shop's backoff lapsed but has not closed yet: its parked jobs go back a few at a time."""
    entry = _PARKED.get(shop)
    return entry is not None and entry[0] <= now


def check(now: float) -> None:
    """Raise `ShopParkedError` when the running task's shop backs off (before any request)."""
    shop = SHOP.get()
    entry = parked(shop, now)
    if entry is not None and shop is not None:
        raise ShopParkedError(shop, entry[1], entry[0])
