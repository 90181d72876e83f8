from __future__ import annotations

from typing import Any

import pytest

from mappings.conditions import evaluate, matches
from mappings.installation import Condition
from mappings.normalize import normalize_customer
from mappings.snapshot import UNKNOWN, plain, resolve
from tests.mappings import payloads as p


@pytest.mark.parametrize(
    ("op", "value", "wanted", "expected"),
    [
        # eq / ne
        ("eq", "SE", "SE", True),
        ("eq", "se", "SE", True),
        ("eq", " SE ", "se", True),
        ("eq", "NO", "SE", False),
        ("eq", None, "SE", False),
        ("eq", 3, 3, True),
        ("eq", "12.50", 12.5, True),
        ("eq", 12.5, "12.5", True),
        ("eq", True, True, True),
        ("eq", False, True, False),
        ("eq", ["vip", "gold"], "VIP", True),
        ("eq", ["gold"], "vip", False),
        ("ne", "NO", "SE", True),
        ("ne", "SE", "se", False),
        ("ne", None, "SE", True),
        ("ne", ["gold"], "vip", True),
        ("ne", ["vip"], "vip", False),
        # in / not_in
        ("in", "SE", ("SE", "NO"), True),
        ("in", "dk", ("SE", "NO"), False),
        ("in", None, ("SE",), False),
        ("in", 3, (1, 2, 3), True),
        ("in", ["a", "vip"], ("vip", "x"), True),
        ("not_in", "DK", ("SE", "NO"), True),
        ("not_in", "SE", ("SE", "NO"), False),
        ("not_in", None, ("SE",), True),
        # contains / not_contains
        ("contains", ["vip", "gold"], "vip", True),
        ("contains", ["VIP"], "vip", True),
        ("contains", ["vipp"], "vip", False),
        ("contains", ["vip", "gold"], "vip, gold", True),
        ("contains", ["vip"], "vip, gold", False),
        ("contains", "vip, gold", "gold", True),
        ("contains", "bob@example.com", "@EXAMPLE.", True),
        ("contains", "bob@example.com", "@other", False),
        ("contains", None, "x", False),
        ("contains", [], "x", False),
        ("contains", 12, "1", False),
        ("not_contains", ["vip"], "vip", False),
        ("not_contains", ["gold"], "vip", True),
        ("not_contains", None, "vip", True),
        ("not_contains", "abc", "z", True),
        # exists
        ("exists", "x", True, True),
        ("exists", None, True, False),
        ("exists", "", True, False),
        ("exists", [], True, False),
        ("exists", {}, True, False),
        ("exists", 0, True, True),
        ("exists", False, True, True),
        ("exists", None, False, True),
        ("exists", "x", False, False),
        # gt / gte / lt / lte on numbers
        ("gt", 3, 2, True),
        ("gt", 2, 2, False),
        ("gte", 2, 2, True),
        ("lt", 1, 2, True),
        ("lte", 2.0, 2, True),
        ("gt", "199.65", 100, True),
        ("lt", "199.65", 100, False),
        ("gt", None, 0, False),
        ("gt", "abc", 0, False),
        ("gt", True, 0, False),
        ("gte", "5", "4", True),
        # on ISO dates and times
        ("gt", "2024-03-01T00:00:00Z", "2024-01-01", True),
        ("lt", "2024-03-01T00:00:00Z", "2024-01-01", False),
        ("gte", "2024-01-01T00:00:00Z", "2024-01-01", True),
        ("lt", "2023-12-31T23:00:00-02:00", "2024-01-01T00:00:00Z", False),
        ("lt", "2023-12-31T21:00:00-02:00", "2024-01-01T00:00:00Z", True),
        ("lte", "2024-01-01", "2024-01-01T00:00:00+00:00", True),
        ("gt", "not a date", "2024-01-01", False),
        ("gt", None, "2024-01-01", False),
    ],
)
def test_operators(op: str, value: Any, wanted: Any, expected: bool) -> None:
    assert evaluate(Condition("f", op, wanted), value) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "contains", "not_contains", "exists", "gt", "lt"])
def test_unknown_field_is_unknown(op: str) -> None:
    assert evaluate(Condition("f", op, "x"), UNKNOWN) is None


def _fields(payload: dict[str, Any], *paths: str) -> dict[str, Any]:
    s = normalize_customer(payload)
    return {path: plain(resolve(s, path)) for path in paths}


def test_matches_on_a_real_snapshot() -> None:
    paths = (
        "tags",
        "default_address.country_code",
        "email_marketing_consent.state",
        "total_spent",
        "created_at",
    )
    fields = _fields(p.rest_2024_10(), *paths)
    vip_nordic = (
        Condition("tags", "contains", "vip"),
        Condition("default_address.country_code", "in", ("SE", "NO")),
        Condition("email_marketing_consent.state", "eq", "subscribed"),
        Condition("total_spent", "gte", 100),
        Condition("created_at", "lt", "2021-01-01"),
    )
    assert matches(vip_nordic, fields) is True
    assert matches((*vip_nordic, Condition("tags", "contains", "gold")), fields) is False
    assert matches((), fields) is True


def test_matches_three_valued() -> None:
    fields = _fields(p.rest_2025_01(), "tags", "first_name")
    known_true = Condition("first_name", "eq", "Bob")
    on_unknown = Condition("tags", "contains", "vip")
    assert matches((known_true, on_unknown), fields) is None
    assert matches((Condition("first_name", "eq", "Alice"), on_unknown), fields) is False
    assert matches((on_unknown,), {}) is None
