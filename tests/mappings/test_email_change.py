"""Email and phone changes, through `plan_sync` as the worker uses it."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.email_change import address_changed, plan_address_change
from mappings.normalize import normalize_customer, normalize_email_consent_update
from mappings.plan import Plan, needs_old_address_topics, plan_sync
from mappings.snapshot import UNKNOWN
from mappings.state import SyncState
from mappings.writes import AddressList, ConsentWrite
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
NEWS = "com.apsis1.consent-lists.newsletter"
OLD, NEW = "bob@example.com", "robert@example.com"
LATER = "2024-12-01T00:00:00Z"


def _consents(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(w.channel, w.address, w.topic, w.type) for w in plan.writes if isinstance(w, ConsentWrite)]


def _synced(**overrides: Any) -> SyncState:
    """The state after syncing a subscribed 2024-10 customer."""
    plan = plan_sync(p.shop(), None, normalize_customer(p.rest_2024_10(**overrides)))
    assert plan.state is not None
    return plan.state


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a@b.c", "x@y.z", True),
        ("a@b.c", None, True),
        ("a@b.c", "a@b.c", False),
        ("a@b.c", UNKNOWN, False),
        (None, "a@b.c", False),
    ],
)
def test_address_changed(old: str | None, new: Any, expected: bool) -> None:
    assert address_changed(old, new) is expected


def test_needs_old_address_topics_names_each_list() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER))
    assert needs_old_address_topics(p.shop(), state, changed) == [
        AddressList(EMAIL_CH, OLD, "sec.main", NEWS)
    ]
    same = normalize_customer(p.rest_2024_10(updated_at=LATER))
    assert needs_old_address_topics(p.shop(), state, same) == []
    assert needs_old_address_topics(p.shop(), None, changed) == []
    stale = normalize_customer(p.rest_2024_10(email=NEW, updated_at="2020-01-01T00:00:00Z"))
    assert needs_old_address_topics(p.shop(), state, stale) == []


def test_subscribed_email_change_moves_every_topic_incl_outside_shopify() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER))
    key = AddressList(EMAIL_CH, OLD, "sec.main", NEWS)
    plan = plan_sync(p.shop(), state, changed, old_address_topics={key: ["topic.news", "topic.partner"]})
    assert _consents(plan) == [
        (EMAIL_CH, NEW, "topic.news", "opt-in"),
        (EMAIL_CH, NEW, "topic.offers", "opt-in"),
        (EMAIL_CH, NEW, "topic.partner", "opt-in"),  # consented outside Shopify: carried over
        (EMAIL_CH, OLD, "topic.news", "opt-out"),
        (EMAIL_CH, OLD, "topic.offers", "opt-out"),
        (EMAIL_CH, OLD, "topic.partner", "opt-out"),
    ]
    assert plan.state is not None
    assert plan.state.email == NEW
    assert {k.address for k in plan.state.consents if k.channel == EMAIL_CH} == {NEW}
    assert plan_sync(p.shop(), plan.state, changed).writes == ()


def test_not_subscribed_customer_still_carries_old_address_topics() -> None:
    quiet = {"state": "not_subscribed", "opt_in_level": None, "consent_updated_at": None}
    state = _synced(email_marketing_consent=quiet)
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER, email_marketing_consent=quiet))
    key = AddressList(EMAIL_CH, OLD, "sec.main", NEWS)
    plan = plan_sync(p.shop(), state, changed, old_address_topics={key: ["topic.offers"]})
    assert _consents(plan) == [
        (EMAIL_CH, NEW, "topic.offers", "opt-in"),
        (EMAIL_CH, OLD, "topic.news", "opt-out"),
        (EMAIL_CH, OLD, "topic.offers", "opt-out"),
    ]
    assert plan.state is not None
    # a later not_subscribed update does not undo the carried topic
    again = normalize_customer(
        p.rest_2024_10(email=NEW, updated_at="2024-12-02T00:00:00Z", email_marketing_consent=quiet)
    )
    assert plan_sync(p.shop(), plan.state, again).writes == ()


def test_new_address_unsubscribed_gets_nothing_carried() -> None:
    state = _synced()
    out = {"state": "unsubscribed", "opt_in_level": None, "consent_updated_at": LATER}
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER, email_marketing_consent=out))
    key = AddressList(EMAIL_CH, OLD, "sec.main", NEWS)
    plan = plan_sync(p.shop(), state, changed, old_address_topics={key: ["topic.news", "topic.partner"]})
    assert _consents(plan) == [
        (EMAIL_CH, NEW, "topic.news", "opt-out"),
        (EMAIL_CH, NEW, "topic.offers", "opt-out"),
        (EMAIL_CH, OLD, "topic.news", "opt-out"),
        (EMAIL_CH, OLD, "topic.offers", "opt-out"),
        (EMAIL_CH, OLD, "topic.partner", "opt-out"),
    ]


def test_subscribed_to_not_subscribed_with_change_opts_mapped_topics_out() -> None:
    state = _synced()
    quiet = {"state": "not_subscribed", "opt_in_level": None, "consent_updated_at": LATER}
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER, email_marketing_consent=quiet))
    key = AddressList(EMAIL_CH, OLD, "sec.main", NEWS)
    plan = plan_sync(p.shop(), state, changed, old_address_topics={key: ["topic.news", "topic.partner"]})
    assert (EMAIL_CH, NEW, "topic.news", "opt-out") in _consents(plan)
    assert (EMAIL_CH, NEW, "topic.partner", "opt-in") in _consents(plan)


def test_without_evaluations_falls_back_to_what_we_wrote() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER))
    plan = plan_sync(p.shop(), state, changed)
    assert [c for c in _consents(plan) if c[1] == OLD] == [
        (EMAIL_CH, OLD, "topic.news", "opt-out"),
        (EMAIL_CH, OLD, "topic.offers", "opt-out"),
    ]


def test_email_removed_opts_old_address_out() -> None:
    state = _synced()
    plan = plan_sync(p.shop(), state, normalize_customer(p.rest_2024_10(email=None, updated_at=LATER)))
    assert _consents(plan) == [
        (EMAIL_CH, OLD, "topic.news", "opt-out"),
        (EMAIL_CH, OLD, "topic.offers", "opt-out"),
    ]
    assert plan.state is not None and plan.state.email is None


def test_phone_change_on_sms_channel() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(phone="+46709999999", updated_at=LATER))
    key = AddressList(SMS_CH, "+46701234567", "sec.main", "com.apsis1.consent-lists.sms")
    assert needs_old_address_topics(p.shop(), state, changed) == [key]
    plan = plan_sync(p.shop(), state, changed, old_address_topics={key: ["topic.sms"]})
    assert _consents(plan) == [
        (SMS_CH, "+46709999999", "topic.sms", "opt-in"),
        (SMS_CH, "+46701234567", "topic.sms", "opt-out"),
    ]


def test_email_unknown_in_a_payload_is_not_a_change() -> None:
    state = _synced()
    payload = p.rest_2024_10(updated_at=LATER)
    del payload["email"]
    assert _consents(plan_sync(p.shop(), state, normalize_customer(payload))) == []


def test_consent_topic_address_only_fills_unknown_email() -> None:
    """A consent topic is not ordered against customer updates: its address never changes a known one."""
    state = _synced()
    topic = normalize_email_consent_update(
        p.email_consent_topic("subscribed", email_address="stale@example.com")
    )
    plan = plan_sync(p.shop(), state, topic)
    assert plan.state is not None and plan.state.email == OLD
    first = plan_sync(p.shop(), None, topic)
    assert first.state is not None and first.state.email == "stale@example.com"


def test_plan_address_change_direct() -> None:
    change = plan_address_change(p.EMAIL, "sec", OLD, NEW, "subscribed", "subscribed", ["topic.x"])
    assert [(w.address, w.topic, w.type) for w in change.new_address] == [
        (NEW, "topic.news", "opt-in"),
        (NEW, "topic.offers", "opt-in"),
        (NEW, "topic.x", "opt-in"),
    ]
    assert [w.type for w in change.old_address] == ["opt-out"] * 3
    gone = plan_address_change(p.EMAIL, "sec", OLD, None, "subscribed", "subscribed", ["topic.x"])
    assert gone.new_address == [] and gone.desired == {} and len(gone.old_address) == 3
