"""Hypothesis properties of the plan over random customers and random update sequences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mappings.installation import Condition
from mappings.plan import Plan, address_changes, plan_sync, tracked_paths
from mappings.snapshot import (
    CONSENT_STATES,
    UNKNOWN,
    Consent,
    CustomerSnapshot,
    TagsChange,
    merge_snapshots,
    plain,
    resolve,
)
from mappings.state import SyncState, consent_of
from mappings.writes import ConsentKey, ConsentWrite
from tests.mappings import payloads as p

CID = 42
VIP = p.section(
    "sec.vip",
    conditions=(
        Condition("tags", "contains", "vip"),
        Condition("default_address.country_code", "in", ("SE", "NO")),
    ),
    attributes={"first_name": "9", "default_address.city": "10"},
    sms=None,
)
BIG = p.section("sec.big", conditions=(Condition("total_spent", "gte", 100),), email=None)
SHOP = p.shop(p.section(), VIP, BIG)
PROPS = settings(max_examples=150, deadline=None)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
times = st.integers(0, 50).map(lambda h: T0 + timedelta(hours=h))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(UNKNOWN), strategy)


consents = st.one_of(
    st.none(),
    st.builds(Consent, st.sampled_from(sorted(CONSENT_STATES)), st.none(), st.one_of(st.none(), times)),
)
addresses = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"country_code": st.sampled_from(["SE", "NO", "DK"]), "city": st.sampled_from(["Oslo", "Malmö", ""])}
    ),
)
snapshots = st.builds(
    CustomerSnapshot,
    id=st.just(CID),
    email=maybe(st.sampled_from(["a@x.se", "b@x.se", None])),
    phone=maybe(st.sampled_from(["+46700000001", "+46700000002", None])),
    first_name=maybe(st.sampled_from(["Ann", "Bo", None])),
    tags=maybe(st.lists(st.sampled_from(["vip", "gold", "news"]), unique=True).map(tuple)),
    default_address=maybe(addresses),
    total_spent=maybe(st.sampled_from([Decimal("0.00"), Decimal("99.99"), Decimal("150.5"), None])),
    updated_at=maybe(times),
    email_marketing_consent=maybe(consents),
    sms_marketing_consent=maybe(consents),
)
tag_changes = st.builds(
    TagsChange,
    customer_id=st.just(CID),
    added=st.lists(st.sampled_from(["vip", "gold"]), unique=True, max_size=2).map(tuple),
    removed=st.lists(st.sampled_from(["vip", "news"]), unique=True, max_size=2).map(tuple),
    occurred_at=st.one_of(st.none(), times),
)
updates = st.one_of(snapshots, snapshots, tag_changes)
# The version ids of com.apsis1.attributes.email / .mobile per section, as the worker reads them.
ADDRESS = {s.discriminator: {"email": "v-email", "sms": "v-mobile"} for s in SHOP.sections}


def _apply_all(sequence: Sequence[CustomerSnapshot | TagsChange]) -> SyncState | None:
    state: SyncState | None = None
    for update in sequence:
        state = plan_sync(SHOP, state, update).state
    return state


@PROPS
@given(st.lists(updates, max_size=4), updates, st.booleans())
def test_planning_again_after_applying_writes_nothing(history: list[Any], update: Any, force: bool) -> None:
    state = _apply_all(history)
    first = plan_sync(SHOP, state, update, address_attributes=ADDRESS, force=force)
    second = plan_sync(SHOP, first.state, update, address_attributes=ADDRESS)
    event(f"first plan writes: {min(len(first.writes), 3)}")
    event(f"address change: {bool(address_changes(state, first.state))}")
    assert second.writes == ()
    assert second.state == first.state


@PROPS
@given(st.lists(updates, min_size=1, max_size=4), snapshots, st.booleans())
def test_older_snapshot_never_writes_over_newer_state(history: list[Any], update: Any, force: bool) -> None:
    state = _apply_all(history)
    if state is None or state.updated_at is None:
        return
    event("older snapshot over a dated state")
    older = CustomerSnapshot(**{**_fields_of(update), "updated_at": state.updated_at - timedelta(seconds=1)})
    plan = plan_sync(SHOP, state, older, force=force)
    assert plan.stale and plan.writes == () and plan.state is state


@PROPS
@given(st.lists(updates, max_size=4), snapshots)
def test_unknown_never_overwrites_known(history: list[Any], update: CustomerSnapshot) -> None:
    state = _apply_all(history)
    plan = plan_sync(SHOP, state, update)
    if state is None or plan.state is None:
        return
    for path in tracked_paths(SHOP):
        if plain(resolve(update, path)) is UNKNOWN and path in state.fields:
            assert plan.state.fields[path] == state.fields[path], path


@PROPS
@given(snapshots, snapshots)
def test_merge_snapshots_keeps_known_fields(old: CustomerSnapshot, new: CustomerSnapshot) -> None:
    merged = merge_snapshots(old, new)
    for name, value in _fields_of(new).items():
        expected = getattr(old, name) if value is UNKNOWN else value
        assert getattr(merged, name) == expected


def _stored(history: Sequence[CustomerSnapshot | TagsChange]) -> tuple[SyncState, dict[str, Any]]:
    """The state `history` leads to, and its JSON form as Redis gives it back."""
    state: SyncState | None = None
    for update in history:
        state = plan_sync(SHOP, state, update, address_attributes=ADDRESS).state
    assert state is not None
    return state, orjson.loads(orjson.dumps(state.to_dict()))


@PROPS
@given(st.lists(updates, min_size=1, max_size=5))
def test_state_round_trips_through_json(history: list[Any]) -> None:
    state, data = _stored(history)
    assert SyncState.from_dict(data) == state
    assert SyncState.from_dict(data).to_dict() == state.to_dict()


@PROPS
@given(st.lists(updates, max_size=4), updates)
def test_writes_only_for_sections_the_customer_is_in(history: list[Any], update: Any) -> None:
    state = _apply_all(history)
    plan: Plan = plan_sync(SHOP, state, update, address_attributes=ADDRESS)
    assert plan.state is not None
    for write in plan.writes:
        assert getattr(write, "section", None) in plan.state.sections
        if isinstance(write, ConsentWrite) and write.type == "opt-in":
            # An opt-in only ever comes from a subscribed consent in Shopify, on the profile.
            path = (
                "email_marketing_consent.state"
                if write.channel.endswith(".email")
                else "sms_marketing_consent.state"
            )
            assert plan.state.fields[path] == "subscribed"
            assert write.profile_key == str(plan.state.customer_id)


@PROPS
@given(st.lists(updates, min_size=1, max_size=4), st.sampled_from(["new@x.se", "other@x.se", None]))
def test_an_address_change_alone_writes_no_consent(history: list[Any], email: str | None) -> None:
    state = _apply_all(history)
    if state is None or state.updated_at is None:
        return
    snapshot = CustomerSnapshot(id=CID, email=email, updated_at=state.updated_at + timedelta(seconds=1))
    plan = plan_sync(SHOP, state, snapshot, address_attributes=ADDRESS)
    event(f"address change: {bool(address_changes(state, plan.state))}")
    assert not [w for w in plan.writes if isinstance(w, ConsentWrite)]
    assert plan.state is not None and plan.state.consents == state.consents


def _fields_of(snapshot: CustomerSnapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in CustomerSnapshot.__dataclass_fields__}


full_snapshots = st.builds(
    CustomerSnapshot,
    id=st.just(CID),
    email=st.sampled_from(["a@x.se", "b@x.se", None]),
    phone=st.sampled_from(["+46700000001", None]),
    first_name=st.sampled_from(["Ann", "Bo", None]),
    tags=st.lists(st.sampled_from(["vip", "gold"]), unique=True).map(tuple),
    default_address=addresses,
    total_spent=st.sampled_from([Decimal("0.00"), Decimal("150.5"), None]),
    updated_at=times,
    email_marketing_consent=st.builds(Consent, st.sampled_from(sorted(CONSENT_STATES))),
    sms_marketing_consent=st.builds(Consent, st.sampled_from(sorted(CONSENT_STATES))),
)


@PROPS
@given(st.lists(full_snapshots, min_size=1, max_size=5, unique_by=lambda s: s.updated_at), st.randoms())
def test_delivery_order_does_not_matter(snapshots: list[CustomerSnapshot], random: Any) -> None:
    """Full customer payloads delivered in any order end where the newest one alone leads."""
    shuffled = list(snapshots)
    random.shuffle(shuffled)
    state = _apply_all(shuffled)
    newest = max(snapshots, key=lambda s: s.updated_at if isinstance(s.updated_at, datetime) else T0)
    alone = _apply_all([newest])
    assert state is not None and alone is not None
    assert state.fields == alone.fields
    assert state.sections == alone.sections
    assert state.updated_at == newest.updated_at
    for section, written in alone.attributes.items():
        assert {k: v for k, v in state.attributes[section].items() if k in written} == written


@PROPS
@given(st.lists(updates, min_size=1, max_size=5))
def test_consent_of_reads_what_the_whole_state_holds(history: list[Any]) -> None:
    """The import verification reads one consent from a state's JSON without building the state."""
    state, data = _stored(history)
    keys = set(state.consents) | {
        ConsentKey(s.discriminator, channel, topic)
        for s in SHOP.sections
        for channel in ("com.apsis1.channels.email", "com.apsis1.channels.sms")
        for topic in ("topic.news", "topic.none")
    }
    for key in keys:
        assert consent_of(data, key) == state.consents.get(key)
