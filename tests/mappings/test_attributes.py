from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from mappings.attributes import attribute_value, changed_attributes, map_attributes
from mappings.snapshot import UNKNOWN, Consent
from tests.mappings import payloads as p


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bob", "Bob"),
        ("", None),
        ("   ", None),
        (None, None),
        (3, 3),
        (0, 0),
        (Decimal("199.65"), 199.65),
        (Decimal("0.00"), 0.0),
        (1.5, 1.5),
        (True, True),
        (False, False),
        (datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=-5))), "2024-01-01T15:00:00Z"),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00Z"),
        (("vip", "gold"), "vip, gold"),
        (["vip"], "vip"),
        ((), None),
        ([], None),
        ({"city": "Stockholm"}, '{"city":"Stockholm"}'),
        ({}, None),
        (Consent("subscribed", None, None), '{"opt_in_level":null,"state":"subscribed","updated_at":null}'),
    ],
)
def test_conversions(value: Any, expected: Any) -> None:
    result = attribute_value(value)
    assert result == expected and type(result) is type(expected)


def test_map_attributes_skips_unknown() -> None:
    section = p.section(attributes={"email": "1", "tags": "3", "default_address.city": "6", "note": "7"})
    fields = {"email": "bob@example.com", "tags": UNKNOWN, "default_address.city": None}
    assert map_attributes(section, fields) == {"1": "bob@example.com", "6": None}


@pytest.mark.parametrize(
    ("desired", "written", "force", "body"),
    [
        ({"1": "a", "2": None}, None, False, {"1": "a"}),  # first write: no nulls for nothing
        ({"1": "a", "2": None}, None, True, {"1": "a", "2": None}),
        ({"1": "a"}, {"1": "a"}, False, {}),
        ({"1": "a"}, {"1": "a"}, True, {"1": "a"}),
        ({"1": "b"}, {"1": "a"}, False, {"1": "b"}),
        ({"1": None}, {"1": "a"}, False, {"1": None}),  # became empty: cleared
        ({"1": None}, {"1": None}, False, {}),
        ({"1": 1}, {"1": True}, False, {"1": 1}),
        ({"1": 1.0}, {"1": 1}, False, {"1": 1.0}),
        ({}, {"1": "a"}, False, {}),
    ],
)
def test_changed_attributes(
    desired: dict[str, Any], written: dict[str, Any] | None, force: bool, body: dict[str, Any]
) -> None:
    assert changed_attributes(desired, written, force=force) == body
