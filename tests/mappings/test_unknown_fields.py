"""Fields a state has never known: what only a read of the whole customer can fill.

The sequence behind the shopify-429 losses: a trimmed 2025-01 `customers/update` (no tags) is a
customer's first sight, the read of the whole customer fails, and the full sync's snapshot of the
customer, read before that update, is older than the state. The snapshot stays stale as a whole
(it cannot tell whether the tags changed since); `unknown_paths` tells the worker the tags are
still owed, and only a current read (a fetch, or a reconciliation's page) fills them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.installation import Condition
from mappings.normalize import normalize_customer, normalize_tags_change
from mappings.plan import Plan, plan_sync, tracked_paths, unknown_paths
from mappings.snapshot import CustomerSnapshot, TagsChange
from mappings.state import SyncState
from mappings.writes import AttributePatch
from tests.mappings import payloads as p
from tests.mappings.test_properties import PROPS, updates
from tests.mappings.test_properties import SHOP as PROPS_SHOP

VIP = p.section("sec.vip", conditions=(Condition("tags", "contains", "vip"),), attributes={"first_name": "9"})
SHOP = p.shop(p.section(), VIP)
# What 2025-01 customer payloads never carry besides the tags.
CONSENT = frozenset({"email_marketing_consent.state", "sms_marketing_consent.state"})
T2 = "2025-02-01T10:00:00Z"  # the trimmed update's updated_at


def _trimmed() -> CustomerSnapshot:
    return normalize_customer(p.rest_2025_01(updated_at=T2, first_name="Robert"))


def _full(updated_at: str) -> CustomerSnapshot:
    return normalize_customer(p.rest_2024_10(updated_at=updated_at, first_name="Robert"))


def _tags_added(tags: list[str], occurred_at: str = "2025-02-01T10:00:00Z") -> TagsChange:
    return normalize_tags_change("customer.tags_added", p.tags_topic(tags, occurred_at))


def _run(history: list[CustomerSnapshot | TagsChange]) -> SyncState | None:
    state: SyncState | None = None
    for update in history:
        state = plan_sync(SHOP, state, update).state
    return state


def _patch(plan: Plan, section: str = "sec.main") -> dict[str, Any]:
    return next(
        (dict(w.body) for w in plan.writes if isinstance(w, AttributePatch) and w.section == section), {}
    )


def test_without_a_state_every_path_is_unknown() -> None:
    assert unknown_paths(SHOP, None) == tracked_paths(SHOP)


@pytest.mark.parametrize(
    ("name", "history", "owed"),
    [
        ("trimmed update first", [_trimmed()], {"tags"} | CONSENT),
        ("tags delta on tags never known", [_tags_added(["vip"])], tracked_paths(SHOP)),
        (
            "trimmed update, then a stale full-sync snapshot",
            [_trimmed(), _full("2024-11-05T19:00:00Z")],
            {"tags"} | CONSENT,
        ),
        ("trimmed update, then the customer read now", [_trimmed(), _full("2025-02-01T10:00:05Z")], set()),
        ("trimmed update, then a reconciliation page (same updated_at)", [_trimmed(), _full(T2)], set()),
        ("full snapshot, then a trimmed update", [_full("2024-11-05T19:00:00Z"), _trimmed()], set()),
    ],
)
def test_what_stays_owed(name: str, history: list[CustomerSnapshot | TagsChange], owed: set[str]) -> None:
    assert unknown_paths(SHOP, _run(history)) == frozenset(owed), name


@pytest.mark.parametrize(
    ("name", "snapshot", "stale", "tags_written", "vip"),
    [
        (
            "older snapshot: stale as a whole, the tags stay owed",
            _full("2024-11-05T19:00:00Z"),
            True,
            False,
            False,
        ),
        (
            "read now: the tags are written and decide the VIP section",
            _full("2025-02-01T10:00:05Z"),
            False,
            True,
            True,
        ),
        ("same updated_at (a reconciliation's page): written", _full(T2), False, True, True),
    ],
)
def test_a_snapshot_after_a_trimmed_first_sight(
    name: str, snapshot: CustomerSnapshot, stale: bool, tags_written: bool, vip: bool
) -> None:
    state = _run([_trimmed()])
    assert state is not None and "tags" not in state.fields
    assert _patch(plan_sync(SHOP, None, _trimmed())).get("3") is None, "no tags attribute without tags"
    plan = plan_sync(SHOP, state, snapshot)
    assert plan.stale is stale, name
    assert ("3" in _patch(plan)) is tags_written, name
    if tags_written:
        assert _patch(plan)["3"] == "vip, newsletter"
    assert plan.state is not None and ("sec.vip" in plan.state.sections) is vip, name


def test_a_delta_after_the_fill_applies_on_the_read_tags() -> None:
    state = _run([_trimmed(), _full("2025-02-01T10:00:05Z")])
    plan = plan_sync(SHOP, state, _tags_added(["gold"], "2025-02-01T10:00:06Z"))
    assert _patch(plan) == {"3": "vip, newsletter, gold"}


@PROPS
@given(st.lists(updates, max_size=4), updates)
def test_unknown_paths_of_a_plans_state_are_the_plans_unknown(history: list[Any], update: Any) -> None:
    state: SyncState | None = None
    for step in history:
        state = plan_sync(PROPS_SHOP, state, step).state
    before = unknown_paths(PROPS_SHOP, state)
    plan = plan_sync(PROPS_SHOP, state, update)
    after = unknown_paths(PROPS_SHOP, plan.state)
    if not plan.stale:
        assert after == plan.unknown
    assert after <= before  # a known field never becomes unknown again
