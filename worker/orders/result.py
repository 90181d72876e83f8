"""What sending orders reports: `OrderResult` for one order (its outcome and how many POSTs
and items went out or were left uncertain) and `HistoryResult` for a history run (orders seen,
counted per outcome, and failed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class OrderResult:
    """What happened to one order. `outcome`: sent, duplicate (everything sent before),
    uncertain (nothing sent now, some items left unknown by an earlier crash), other_topic,
    cancelled, unsettled (history only), guest_skipped, guest_no_email, not_synced (customer in
    no section), customer_deleted, no_events (its sections map no event versions), busy
    (history only: another worker is sending it right now)."""

    outcome: str
    order_id: int
    profile_key: str | None = None
    posts: int = 0
    items: int = 0
    uncertain: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "order_id": self.order_id,
            "posts": self.posts,
            "items": self.items,
            "uncertain": self.uncertain,
        }


@dataclass
class HistoryResult:
    """Counts of a history run: orders seen, per outcome, and those that failed (logged)."""

    seen: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    created_at_min: datetime | None = None

    @property
    def sent(self) -> int:
        return self.outcomes["sent"]
