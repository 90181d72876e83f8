"""One typed customer snapshot, whatever Shopify payload it came from.

- Every field but `id` may be `UNKNOWN`: the payload did not carry it (2025-01 customer webhooks
  carry no tags and no consent; a consent topic carries only an address and a consent). `None`
  means known and empty. Unknown never overwrites known (`merge_snapshots`).
- Emails are lower-cased and stripped; empty strings become `None`.
- `raw` keeps every other payload field (snake_case) so attribute paths can reach it. The
  legacy paths `accepts_marketing`, `accepts_marketing_updated_at` and `marketing_opt_in_level`
  are derived from the email consent on every version (true only when `subscribed`).
- `resolve(snapshot, "default_address.country_code")` reads a dotted path; `plain()` turns a value
  into the JSON form used by conditions, attributes and the stored state (times as UTC ISO 8601
  with `Z`, decimals as floats, tuples as lists).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeAlias, TypeVar

CONSENT_STATES: Final = frozenset(
    {"subscribed", "not_subscribed", "pending", "unsubscribed", "redacted", "invalid"}
)

JSON: TypeAlias = bool | int | float | str | list[Any] | dict[str, Any] | None


class Unknown(enum.Enum):
    """The payload did not say. Falsy so `if value:` treats it like empty, but never equal to it."""

    UNKNOWN = "UNKNOWN"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown.UNKNOWN
T = TypeVar("T")
Known: TypeAlias = T | Unknown


class PayloadError(ValueError):
    """A payload that cannot be a customer; `field` names the offending key."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True, slots=True)
class Consent:
    state: str  # one of CONSENT_STATES
    opt_in_level: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    id: int
    email: Known[str | None] = UNKNOWN
    phone: Known[str | None] = UNKNOWN
    first_name: Known[str | None] = UNKNOWN
    last_name: Known[str | None] = UNKNOWN
    tags: Known[tuple[str, ...]] = UNKNOWN
    state: Known[str | None] = UNKNOWN
    verified_email: Known[bool | None] = UNKNOWN
    addresses: Known[tuple[Mapping[str, Any], ...]] = UNKNOWN
    default_address: Known[Mapping[str, Any] | None] = UNKNOWN
    orders_count: Known[int | None] = UNKNOWN
    total_spent: Known[Decimal | None] = UNKNOWN
    currency: Known[str | None] = UNKNOWN
    created_at: Known[datetime | None] = UNKNOWN
    updated_at: Known[datetime | None] = UNKNOWN
    email_marketing_consent: Known[Consent | None] = UNKNOWN
    sms_marketing_consent: Known[Consent | None] = UNKNOWN
    raw: Mapping[str, Any] = field(default_factory=dict)

    def known_fields(self) -> frozenset[str]:
        """Names of the typed fields this snapshot knows (raw keys not included)."""
        return frozenset(
            f.name for f in fields(self) if f.name != "raw" and getattr(self, f.name) is not UNKNOWN
        )


TYPED_FIELDS: Final = frozenset(f.name for f in fields(CustomerSnapshot)) - {"raw"}


@dataclass(frozen=True, slots=True)
class TagsChange:
    """`customer.tags_added` / `customer.tags_removed`: a delta, not the full list."""

    customer_id: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    occurred_at: datetime | None = None

    def apply(self, tags: Known[tuple[str, ...]]) -> Known[tuple[str, ...]]:
        """The tags after this change; unknown stays unknown (a delta cannot make a full list)."""
        if isinstance(tags, Unknown):
            return UNKNOWN
        gone = {t.casefold() for t in self.removed}
        result = [t for t in tags if t.casefold() not in gone]
        have = {t.casefold() for t in result}
        for tag in self.added:
            if tag.casefold() not in have and tag.casefold() not in gone:
                result.append(tag)
                have.add(tag.casefold())
        return tuple(result)


def merge_snapshots(old: CustomerSnapshot, new: CustomerSnapshot) -> CustomerSnapshot:
    """`new` over `old`, field by field: a field `new` leaves unknown keeps `old`'s value.

    Ordering is the caller's job (see `mappings.plan`); this only never loses known values.
    """
    if old.id != new.id:
        raise ValueError(f"cannot merge customer {new.id} into customer {old.id}")
    changes: dict[str, Any] = {
        name: getattr(new, name) for name in TYPED_FIELDS if getattr(new, name) is not UNKNOWN
    }
    changes["raw"] = {**old.raw, **new.raw}
    return replace(old, **changes)


# --- paths -------------------------------------------------------------------------------------


# 2020-07 field names stay usable in paths on every version, derived from the email consent.
LEGACY_CONSENT_PATHS: Final[Mapping[str, Callable[[Consent], Any]]] = {
    "accepts_marketing": lambda c: c.state == "subscribed",
    "accepts_marketing_updated_at": lambda c: c.updated_at,
    "marketing_opt_in_level": lambda c: c.opt_in_level,
}


def resolve(snapshot: CustomerSnapshot, path: str) -> Any:
    """The value at a dotted path: `UNKNOWN` when the payload did not carry its first segment,
    `None` when a known container lacks the rest (`default_address.city` with no address)."""
    head, _, rest = path.partition(".")
    if head in TYPED_FIELDS:
        value: Any = getattr(snapshot, head)
    elif head in LEGACY_CONSENT_PATHS:
        consent = snapshot.email_marketing_consent
        if not isinstance(consent, Consent):
            return consent  # UNKNOWN or None
        value = LEGACY_CONSENT_PATHS[head](consent)
    elif head in snapshot.raw:
        value = snapshot.raw[head]
    else:
        return UNKNOWN
    if value is UNKNOWN:
        return UNKNOWN
    for part in rest.split(".") if rest else ():
        if isinstance(value, Consent):
            value = getattr(value, part, None)
        elif isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


def plain(value: Any) -> Any:
    """The JSON form of a snapshot value (`UNKNOWN` passes through)."""
    if value is UNKNOWN or value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Consent):
        return {
            "state": value.state,
            "opt_in_level": value.opt_in_level,
            "updated_at": iso_utc(value.updated_at) if value.updated_at else None,
        }
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
