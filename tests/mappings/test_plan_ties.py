"""Snapshots with the state's very `updated_at` (whole seconds): `Plan.tied` when a value differs.

Two edits in one second give two snapshots with one `updated_at`. The plan applies the later one
as newer (a webhook delivered in order is), and flags it when it carries another value for a
field the state knows, so the worker can read the customer instead of trusting a full sync's
snapshot whose read time it does not know (worker/sync.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.normalize import normalize_customer
from mappings.normalize_graphql import normalize_bulk_customer
from mappings.plan import Plan, plan_sync
from mappings.snapshot import CustomerSnapshot
from mappings.state import SyncState
from tests.mappings import payloads as p
from tests.mappings.test_plan import SHOP

SAME = "2024-11-05T14:00:00-05:00"  # rest_2024_10's updated_at
LATER = "2024-11-05T14:00:01-05:00"
EARLIER = "2024-11-05T13:59:59-05:00"


def _state() -> SyncState:
    plan = plan_sync(SHOP, None, normalize_customer(p.rest_2024_10()))
    assert plan.state is not None
    return plan.state


def _plan(snapshot: CustomerSnapshot) -> Plan:
    return plan_sync(SHOP, _state(), snapshot)


REST, TRIMMED, BULK = p.rest_2024_10, p.rest_2025_01, p.bulk_line
CASES: list[tuple[str, Any, dict[str, Any], bool, bool]] = [
    # name, payload over the state of rest_2024_10(), its overrides, tied, stale
    ("the same snapshot again", REST, {}, False, False),
    ("same second, another first name", REST, {"first_name": "Robert"}, True, False),
    ("same second, another email", REST, {"email": "new@example.com"}, True, False),
    ("same second, tags in another order", REST, {"tags": "newsletter, VIP"}, False, False),
    ("same second, a tag more", REST, {"tags": "vip, newsletter, gold"}, True, False),
    ("same second, a trimmed 2025-01 payload", TRIMMED, {"updated_at": SAME}, False, False),
    ("a second later, another first name", REST, {"first_name": "R", "updated_at": LATER}, False, False),
    ("a second earlier, another first name", REST, {"first_name": "R", "updated_at": EARLIER}, False, True),
    ("the bulk export's line of the same customer", BULK, {}, False, False),
    ("the bulk export's line, another first name", BULK, {"firstName": "Robert"}, True, False),
]


@pytest.mark.parametrize(
    ("payload", "overrides", "tied", "stale"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_tie_table(payload: Any, overrides: dict[str, Any], tied: bool, stale: bool) -> None:
    normalize = normalize_bulk_customer if payload is BULK else normalize_customer
    plan = _plan(normalize(payload(**overrides)))
    assert (plan.tied, plan.stale) == (tied, stale)


def test_a_tied_snapshot_is_still_planned_as_newer() -> None:
    """A webhook in Shopify's order keeps working: the later of two same-second edits applies."""
    plan = _plan(normalize_customer(p.rest_2024_10(first_name="Robert")))
    assert plan.tied and plan.state is not None and plan.state.fields["first_name"] == "Robert"
    assert any(getattr(w, "body", {}).get("2") == "Robert" for w in plan.writes)


def test_no_state_no_tie() -> None:
    assert not plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())).tied


@given(
    first_name=st.text(max_size=12),
    tags=st.lists(st.sampled_from(["vip", "newsletter", "gold", "b2b"]), unique=True, max_size=4),
)
def test_a_snapshot_is_never_tied_with_the_state_it_made(first_name: str, tags: list[str]) -> None:
    payload: dict[str, Any] = p.rest_2024_10(first_name=first_name, tags=", ".join(tags))
    snapshot = normalize_customer(payload)
    made = plan_sync(SHOP, None, snapshot).state
    assert made is not None
    assert not plan_sync(SHOP, made, snapshot).tied
    assert not plan_sync(SHOP, made, normalize_customer(dict(payload, tags=", ".join(reversed(tags))))).tied
