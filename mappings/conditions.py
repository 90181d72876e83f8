"""Sync conditions: does a customer belong to a section?

Conditions are evaluated on field values in their JSON form (`mappings.snapshot.plain`), keyed
by dotted path; `mappings.plan` passes the last known value of each path, so a field a payload
leaves out is judged on its last known value.

- All conditions must hold; a section without conditions takes every customer.
- Strings compare case-insensitively and trimmed. A number in the condition compares numerically
  with a numeric string in the field (`total_spent` "12.50" gt 10).
- On a list field (tags): `eq`/`in` hold when any item matches, `ne`/`not_in` when none does;
  `contains` holds when the list has the value, or every item of a comma-separated value.
  On a string: `contains` is a substring test. `not_contains` is its negation.
- `exists` (default true): the field is neither null, "" nor an empty list.
- `gt`/`gte`/`lt`/`lte`: numbers numerically; otherwise both sides as ISO dates (a date is
  midnight UTC, a naive time is UTC). A side that is neither never matches.
- A field never known (`UNKNOWN`) makes its condition unknown; a section whose conditions are
  unknown keeps the customer's previous membership (`matches` returns None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from mappings.installation import Condition
from mappings.snapshot import UNKNOWN


def matches(conditions: Iterable[Condition], fields: Mapping[str, Any]) -> bool | None:
    """True when every condition holds, False when one fails, None when unknown decides."""
    result: bool | None = True
    for condition in conditions:
        outcome = evaluate(condition, fields.get(condition.field, UNKNOWN))
        if outcome is False:
            return False
        if outcome is None:
            result = None
    return result


def evaluate(condition: Condition, value: Any) -> bool | None:
    """One condition on one field value (JSON form); None when the value is unknown."""
    if value is UNKNOWN:
        return None
    return _OPS[condition.op](value, condition.value)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == () or value == {}


def _exists(value: Any, expected: Any) -> bool:
    return (not _is_empty(value)) == (expected is not False)


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _same(field: Any, wanted: Any) -> bool:
    if field is None or wanted is None:
        return field is None and wanted is None
    if isinstance(field, bool) or isinstance(wanted, bool):
        return str(field).lower() == str(wanted).lower()
    if isinstance(wanted, int | float) or isinstance(field, int | float):
        a, b = _number(field), _number(wanted)
        return a is not None and a == b
    return str(field).strip().casefold() == str(wanted).strip().casefold()


def _eq(value: Any, wanted: Any) -> bool:
    return any(_same(item, wanted) for item in _items(value))


def _in(value: Any, wanted: Any) -> bool:
    return any(_same(item, w) for item in _items(value) for w in _items(wanted))


def _contains(value: Any, wanted: Any) -> bool:
    if isinstance(value, list | tuple):
        parts = [p for p in str(wanted).split(",") if p.strip()] if isinstance(wanted, str) else [wanted]
        return bool(parts) and all(any(_same(item, p) for item in value) for p in parts)
    if isinstance(value, str):
        return str(wanted).strip().casefold() in value.casefold()
    return False


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def op(value: Any, wanted: Any) -> bool:
        if isinstance(wanted, int | float) and not isinstance(wanted, bool):
            a, b = _number(value), _number(wanted)
        else:
            a, b = _moment(value), _moment(wanted)  # type: ignore[assignment]
            if a is None or b is None:
                a, b = _number(value), _number(wanted)
        return a is not None and b is not None and test(a, b)

    return op


_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "ne": lambda v, w: not _eq(v, w),
    "in": _in,
    "not_in": lambda v, w: not _in(v, w),
    "contains": _contains,
    "not_contains": lambda v, w: not _contains(v, w),
    "exists": _exists,
    "gt": _compare(lambda a, b: a > b),
    "gte": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lte": _compare(lambda a, b: a <= b),
}
