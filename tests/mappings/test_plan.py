from __future__ import annotations

from typing import Any

import orjson
import pytest

from mappings.installation import Condition
from mappings.normalize import (
    normalize_customer,
    normalize_email_consent_update,
    normalize_sms_consent_update,
    normalize_tags_change,
)
from mappings.normalize_graphql import normalize_bulk_customer
from mappings.plan import Plan, plan_delete, plan_sync, tracked_paths
from mappings.snapshot import PayloadError
from mappings.state import SyncState
from mappings.writes import AttributePatch, ConsentWrite, ProfileDelete
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
VIP = p.section("sec.vip", conditions=(Condition("tags", "contains", "vip"),), attributes={"first_name": "9"})
SHOP = p.shop(p.section(), VIP)


def _patches(plan: Plan) -> dict[str, dict[str, Any]]:
    return {w.section: dict(w.body) for w in plan.writes if isinstance(w, AttributePatch)}


def _consents(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(w.section, w.channel, w.topic, w.type) for w in plan.writes if isinstance(w, ConsentWrite)]


def _state(plan: Plan) -> SyncState:
    assert plan.state is not None
    return plan.state


def test_first_sync_writes_attributes_then_consents() -> None:
    plan = plan_sync(SHOP, None, normalize_customer(p.rest_2024_10()))
    assert _patches(plan) == {
        "sec.main": {
            "1": "bob@example.com",
            "2": "Bob",
            "3": "vip, newsletter",
            "4": 199.65,
            "5": "+46701234567",
        },
        "sec.vip": {"9": "Bob"},
    }
    kinds = [type(w).__name__ for w in plan.writes]
    assert kinds == sorted(kinds)  # AttributePatch before ConsentWrite
    assert ("sec.main", EMAIL_CH, "topic.news", "opt-in") in _consents(plan)
    assert ("sec.main", SMS_CH, "topic.sms", "opt-in") in _consents(plan)
    assert all(w.profile_key == str(p.CUSTOMER_ID) for w in plan.writes if isinstance(w, AttributePatch))
    assert _state(plan).sections == ("sec.main", "sec.vip")


def test_same_snapshot_again_writes_nothing() -> None:
    snapshot = normalize_customer(p.rest_2024_10())
    first = plan_sync(SHOP, None, snapshot)
    second = plan_sync(SHOP, first.state, snapshot)
    assert second.writes == () and not second.stale
    assert second.state == first.state


def test_older_snapshot_changes_nothing() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    old = normalize_customer(p.rest_2022_04(first_name="Robert", email="old@example.com"))
    plan = plan_sync(SHOP, state, old)
    assert plan.stale and plan.writes == () and plan.state is state
    assert plan_sync(SHOP, state, old, force=True).writes == ()


def test_only_changed_attributes_are_patched_and_empty_is_cleared() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    later = normalize_customer(
        p.rest_2024_10(first_name=None, total_spent="250.00", updated_at="2024-12-01T00:00:00Z")
    )
    plan = plan_sync(SHOP, state, later)
    assert _patches(plan) == {"sec.main": {"2": None, "4": 250.0}, "sec.vip": {"9": None}}
    assert _consents(plan) == []


def test_force_rewrites_every_attribute_and_no_consent() -> None:
    snapshot = normalize_customer(p.rest_2024_10(first_name=None))
    state = _state(plan_sync(SHOP, None, snapshot))
    plan = plan_sync(SHOP, state, snapshot, force=True)
    assert _patches(plan)["sec.main"]["2"] is None
    assert len(_patches(plan)["sec.main"]) == 5
    # Consent 2.0: re-sending an unchanged opt-in would override an opt-out given in APSIS since.
    assert _consents(plan) == []


def test_2025_01_update_keeps_known_tags_and_consent() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    plan = plan_sync(SHOP, state, normalize_customer(p.rest_2025_01(first_name="Robert")))
    assert _patches(plan) == {"sec.main": {"2": "Robert"}, "sec.vip": {"9": "Robert"}}
    assert _consents(plan) == []
    new = _state(plan)
    assert new.fields["tags"] == ["vip", "newsletter"]
    assert new.fields["email_marketing_consent.state"] == "subscribed"
    assert new.sections == ("sec.main", "sec.vip")


def test_first_sync_from_2025_01_leaves_unknown_sections_and_paths() -> None:
    plan = plan_sync(SHOP, None, normalize_customer(p.rest_2025_01()))
    assert _state(plan).sections == ("sec.main",)  # vip membership unknown: not entered
    assert plan.unknown == {"tags", "email_marketing_consent.state", "sms_marketing_consent.state"}
    assert "3" not in _patches(plan)["sec.main"]  # unknown tags are not cleared
    assert _consents(plan) == []


def test_tags_change_on_known_tags() -> None:
    shop = p.shop(p.section(), VIP)
    state = _state(plan_sync(shop, None, normalize_customer(p.rest_2024_10(tags="newsletter"))))
    assert state.sections == ("sec.main",)
    added = normalize_tags_change("customer.tags_added", p.tags_topic(["VIP"]))
    plan = plan_sync(shop, state, added)
    assert _patches(plan) == {"sec.main": {"3": "newsletter, VIP"}, "sec.vip": {"9": "Bob"}}
    state = _state(plan)
    assert state.sections == ("sec.main", "sec.vip")
    removed = normalize_tags_change(
        "customer.tags_removed", p.tags_topic(["vip"], occurred_at="2025-02-04T00:00:00Z")
    )
    plan = plan_sync(shop, state, removed)
    assert _patches(plan) == {"sec.main": {"3": "newsletter"}}  # left sec.vip: no more writes there
    assert _state(plan).sections == ("sec.main",)
    assert "sec.vip" not in _state(plan).attributes


def test_tags_change_older_than_known_tags_is_stale() -> None:
    state = _state(
        plan_sync(SHOP, None, normalize_customer(p.rest_2024_10(updated_at="2025-03-01T00:00:00Z")))
    )
    old = normalize_tags_change(
        "customer.tags_removed", p.tags_topic(["vip"], occurred_at="2025-02-01T00:00:00Z")
    )
    plan = plan_sync(SHOP, state, old)
    assert plan.stale and plan.writes == ()


def test_tags_change_on_unknown_tags_stays_unknown() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2025_01())))
    plan = plan_sync(SHOP, state, normalize_tags_change("customer.tags_added", p.tags_topic(["vip"])))
    assert plan.writes == () and "tags" in plan.unknown


def test_consent_topics_after_2025_01_customer() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2025_01())))
    plan = plan_sync(SHOP, state, normalize_email_consent_update(p.email_consent_topic("subscribed")))
    assert _consents(plan) == [
        ("sec.main", EMAIL_CH, "topic.news", "opt-in"),
        ("sec.main", EMAIL_CH, "topic.offers", "opt-in"),
    ]
    plan = plan_sync(SHOP, _state(plan), normalize_sms_consent_update(p.sms_consent_topic("unsubscribed")))
    assert _consents(plan) == [("sec.main", SMS_CH, "topic.sms", "opt-out")]


def test_older_consent_never_overwrites_newer() -> None:
    newer = p.email_consent_topic("unsubscribed")  # 2025-02-02
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2025_01())))
    state = _state(plan_sync(SHOP, state, normalize_email_consent_update(newer)))
    # a 2024-10 style update delivered late, carrying the consent as it was in 2023
    late = normalize_customer(p.rest_2024_10(updated_at="2025-02-05T00:00:00Z"))
    plan = plan_sync(SHOP, state, late)
    assert [c for c in _consents(plan) if c[0] == "sec.main" and c[1] == EMAIL_CH] == []
    # entering sec.vip (tags now known) writes the current decision there: opt-out
    assert ("sec.vip", EMAIL_CH, "topic.news", "opt-out") in _consents(plan)
    assert _state(plan).fields["email_marketing_consent.state"] == "unsubscribed"


def test_leaving_a_section_keeps_the_profile_and_stops_writes() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    out = {"state": "unsubscribed", "opt_in_level": None, "consent_updated_at": "2024-12-01T00:00:00Z"}
    plan = plan_sync(
        SHOP,
        state,
        normalize_customer(
            p.rest_2024_10(tags="newsletter", updated_at="2024-12-01T00:00:00Z", email_marketing_consent=out)
        ),
    )
    assert not any(isinstance(w, ProfileDelete) for w in plan.writes)
    assert {c[0] for c in _consents(plan)} == {"sec.main"}
    assert "sec.vip" not in _patches(plan)


def test_bulk_line_after_webhook_changes_nothing() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    plan = plan_sync(SHOP, state, normalize_bulk_customer(p.bulk_line()))
    assert _consents(plan) == [] and _patches(plan) == {}


def test_customer_mismatch_is_refused() -> None:
    state = SyncState(customer_id=1)
    with pytest.raises(ValueError, match="customer"):
        plan_sync(SHOP, state, normalize_customer(p.rest_2024_10()))


def test_plan_delete() -> None:
    plan = plan_delete(SHOP, p.CUSTOMER_ID)
    assert plan.writes == (ProfileDelete("ks.test", str(p.CUSTOMER_ID)),) and plan.state is None


def test_tracked_paths_cover_demo_installation() -> None:
    paths = tracked_paths(p.demo_shop())
    assert {"tags", "default_address.country_code", "default_address.city", "email"} <= paths


def test_demo_installation_end_to_end() -> None:
    shop = p.demo_shop()
    plan = plan_sync(shop, None, normalize_customer(p.rest_2024_10()))
    sections = [w.section for w in plan.writes if isinstance(w, AttributePatch)]
    assert sections == ["com.apsis1.sections.sandbox", "com.apsis1.sections.sandbox-vip"]
    assert _patches(plan)["com.apsis1.sections.sandbox"]["1010"] == "2020-06-01T14:00:00Z"


def test_state_json_round_trip() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    data = orjson.loads(orjson.dumps(state.to_dict()))
    assert SyncState.from_dict(data) == state


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"customer_id": "x"},
        {"customer_id": 1, "consents": [["a", "b"]]},
        {"customer_id": 1, "times": {"customer": "x"}},
    ],
)
def test_state_from_bad_dict(data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        SyncState.from_dict(data)


def test_untimed_consent_topic_still_applies() -> None:
    """A consent topic without `consent_updated_at` cannot be ordered; an opt-out must not be lost."""
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    topic = p.email_consent_topic("unsubscribed")
    topic["email_marketing_consent"]["consent_updated_at"] = None
    plan = plan_sync(SHOP, state, normalize_email_consent_update(topic))
    assert ("sec.main", EMAIL_CH, "topic.news", "opt-out") in _consents(plan)


def test_coming_back_to_a_section_writes_everything_again() -> None:
    state = _state(plan_sync(SHOP, None, normalize_customer(p.rest_2024_10())))
    left = _state(
        plan_sync(SHOP, state, normalize_customer(p.rest_2024_10(tags="", updated_at="2024-12-01T00:00:00Z")))
    )
    assert left.sections == ("sec.main",)
    assert not any(k.section == "sec.vip" for k in left.consents)
    back = plan_sync(SHOP, left, normalize_customer(p.rest_2024_10(updated_at="2024-12-02T00:00:00Z")))
    assert _patches(back) == {"sec.main": {"3": "vip, newsletter"}, "sec.vip": {"9": "Bob"}}
    assert [c for c in _consents(back) if c[0] == "sec.vip"] == [
        ("sec.vip", EMAIL_CH, "topic.news", "opt-in"),
        ("sec.vip", EMAIL_CH, "topic.offers", "opt-in"),
        ("sec.vip", SMS_CH, "topic.sms", "opt-in"),
    ]


def test_legacy_path_is_ordered_with_email_consent() -> None:
    from mappings.plan import group_of

    assert group_of("accepts_marketing") == "email_consent"
    assert group_of("email_marketing_consent.state") == "email_consent"
    assert group_of("sms_marketing_consent.opt_in_level") == "sms_consent"
    assert group_of("tags") == "tags"
    assert group_of("default_address.city") == "customer"
