"""One update for a customer as deposited in Redis: where it came from and how to read it.

`Update` is the JSON-friendly record every job deposits (a webhook topic's payload, a REST
customer resource or a GraphQL bulk line, with its source and receive/trigger times) and
`worker.sync` folds; `normalized()` turns it into the snapshot or tags delta the pure planner
takes, and `family` says which updates carry the same fields (their trigger times are compared
within one family). `customer_of` names the customer of a normalized update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mappings.normalize import normalize_customer, normalize_topic
from mappings.normalize_graphql import normalize_bulk_customer
from mappings.snapshot import CustomerSnapshot, TagsChange

Source = Literal["webhook", "fullsync", "resync", "reconcile", "order"]
_FAMILIES = {
    "customers_email_marketing_consent/update": "email_consent",
    "customers_marketing_consent/update": "sms_consent",
    "customer.tags_added": "tags",
    "customer.tags_removed": "tags",
}


@dataclass(frozen=True, slots=True)
class Update:
    """One update for a customer as deposited in Redis (JSON-friendly)."""

    kind: Literal["topic", "rest", "bulk"]
    payload: dict[str, Any]
    received_at: float
    topic: str = ""
    source: Source = "webhook"
    force: bool = False
    triggered_at: float | None = None  # X-Shopify-Triggered-At, when the delivery had one

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "payload": self.payload,
            "received_at": self.received_at,
            "source": self.source,
            "force": self.force,
            "triggered_at": self.triggered_at,
        }

    @property
    def family(self) -> str:
        """Updates of one family carry the same fields; trigger times are compared within one."""
        if self.kind != "topic":
            return "customer"
        return _FAMILIES.get(self.topic, "customer")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Update:
        return cls(
            kind=data["kind"],
            payload=data["payload"],
            received_at=float(data["received_at"]),
            topic=data.get("topic", ""),
            source=data.get("source", "webhook"),
            force=bool(data.get("force", False)),
            triggered_at=data.get("triggered_at"),
        )

    def normalized(self) -> CustomerSnapshot | TagsChange:
        """Raises PayloadError for a payload the mapping cannot handle."""
        if self.kind == "topic":
            return normalize_topic(self.topic, self.payload)
        if self.kind == "bulk":
            return normalize_bulk_customer(self.payload)
        return normalize_customer(self.payload)


def customer_of(update: CustomerSnapshot | TagsChange) -> int:
    return update.customer_id if isinstance(update, TagsChange) else update.id
