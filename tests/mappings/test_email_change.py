"""Email and phone changes under Consent 2.0, through `plan_sync` as the worker uses it.

Consent is the profile's; a channel sends to the profile's email/mobile attribute. So a change of
address is an attribute patch and nothing else: the new address has every topic the profile had
(given in Shopify or in APSIS), the old one gets nothing more, and no consent is re-sent (which
would override an opt-out given in APSIS since).
"""

from __future__ import annotations

from typing import Any

from mappings.normalize import normalize_customer, normalize_email_consent_update
from mappings.plan import Plan, address_changes, plan_sync
from mappings.state import SyncState
from mappings.writes import AttributePatch, ConsentKey, ConsentWrite
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
OLD, NEW = "bob@example.com", "robert@example.com"
LATER = "2024-12-01T00:00:00Z"
# The version ids of com.apsis1.attributes.email / .mobile, as the worker reads them from APSIS.
ADDRESS = {"sec.main": {"email": "v-email", "sms": "v-mobile"}}


def _consents(plan: Plan) -> list[tuple[str, str, str]]:
    return [(w.channel, w.topic, w.type) for w in plan.writes if isinstance(w, ConsentWrite)]


def _patches(plan: Plan) -> list[dict[str, Any]]:
    return [dict(w.body) for w in plan.writes if isinstance(w, AttributePatch)]


def _synced(**overrides: Any) -> SyncState:
    """The state after syncing a subscribed 2024-10 customer."""
    plan = plan_sync(
        p.shop(), None, normalize_customer(p.rest_2024_10(**overrides)), address_attributes=ADDRESS
    )
    assert plan.state is not None
    return plan.state


def test_first_sync_writes_the_address_attributes_and_the_profile_consents() -> None:
    plan = plan_sync(p.shop(), None, normalize_customer(p.rest_2024_10()), address_attributes=ADDRESS)
    [patch] = _patches(plan)
    assert patch["v-email"] == OLD and patch["v-mobile"] == "+46701234567"
    assert _consents(plan) == [
        (EMAIL_CH, "topic.news", "opt-in"),
        (EMAIL_CH, "topic.offers", "opt-in"),
        (SMS_CH, "topic.sms", "opt-in"),
    ]
    assert all(w.profile_key == str(plan.state.customer_id) for w in plan.writes if plan.state)


def test_email_change_is_an_attribute_patch_and_no_consent_write() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER))
    plan = plan_sync(p.shop(), state, changed, address_attributes=ADDRESS)
    assert _consents(plan) == []  # the profile keeps every topic; the new address inherits them
    assert [patch.get("v-email") for patch in _patches(plan)] == [NEW]
    assert plan.state is not None
    assert plan.state.email == NEW
    assert plan.state.consents == state.consents
    assert address_changes(state, plan.state) == ["email"]
    assert plan_sync(p.shop(), plan.state, changed, address_attributes=ADDRESS).writes == ()


def test_email_change_with_an_unsubscribe_in_shopify_opts_the_profile_out() -> None:
    state = _synced()
    out = {"state": "unsubscribed", "opt_in_level": None, "consent_updated_at": LATER}
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER, email_marketing_consent=out))
    plan = plan_sync(p.shop(), state, changed, address_attributes=ADDRESS)
    assert _consents(plan) == [(EMAIL_CH, "topic.news", "opt-out"), (EMAIL_CH, "topic.offers", "opt-out")]


def test_not_subscribed_email_change_writes_no_consent() -> None:
    quiet = {"state": "not_subscribed", "opt_in_level": None, "consent_updated_at": None}
    state = _synced(email_marketing_consent=quiet)
    changed = normalize_customer(p.rest_2024_10(email=NEW, updated_at=LATER, email_marketing_consent=quiet))
    plan = plan_sync(p.shop(), state, changed, address_attributes=ADDRESS)
    assert _consents(plan) == []  # consent given in APSIS (a form) stays on the profile


def test_email_removed_clears_the_attribute_and_keeps_the_consents() -> None:
    state = _synced()
    plan = plan_sync(
        p.shop(),
        state,
        normalize_customer(p.rest_2024_10(email=None, updated_at=LATER)),
        address_attributes=ADDRESS,
    )
    assert _consents(plan) == []
    assert [patch.get("v-email", "absent") for patch in _patches(plan)] == [None]
    assert plan.state is not None and plan.state.email is None
    assert address_changes(state, plan.state) == ["email"]


def test_phone_change_on_sms_channel() -> None:
    state = _synced()
    changed = normalize_customer(p.rest_2024_10(phone="+46709999999", updated_at=LATER))
    plan = plan_sync(p.shop(), state, changed, address_attributes=ADDRESS)
    assert _consents(plan) == []
    assert [patch.get("v-mobile") for patch in _patches(plan)] == ["+46709999999"]
    assert plan.state is not None and address_changes(state, plan.state) == ["sms"]


def test_email_unknown_in_a_payload_is_not_a_change() -> None:
    state = _synced()
    payload = p.rest_2024_10(updated_at=LATER)
    del payload["email"]
    plan = plan_sync(p.shop(), state, normalize_customer(payload), address_attributes=ADDRESS)
    assert _consents(plan) == []
    assert plan.state is not None and address_changes(state, plan.state) == []


def test_consent_topic_address_only_fills_unknown_email() -> None:
    """A consent topic is not ordered against customer updates: its address never changes a known one."""
    state = _synced()
    topic = normalize_email_consent_update(
        p.email_consent_topic("subscribed", email_address="stale@example.com")
    )
    plan = plan_sync(p.shop(), state, topic, address_attributes=ADDRESS)
    assert plan.state is not None and plan.state.email == OLD
    first = plan_sync(p.shop(), None, topic, address_attributes=ADDRESS)
    assert first.state is not None and first.state.email == "stale@example.com"


def test_a_section_without_consent_mapping_writes_no_address_attribute_of_its_own() -> None:
    bare = p.section("sec.main", attributes={"first_name": "2"}, email=None, sms=None)
    plan = plan_sync(p.shop(bare), None, normalize_customer(p.rest_2024_10()), address_attributes=ADDRESS)
    [patch] = _patches(plan)
    assert set(patch) == {"2"}  # no address attribute: the section maps no consent


def test_consent_records_are_per_profile_section_channel_topic() -> None:
    state = _synced()
    assert state.consents[ConsentKey("sec.main", EMAIL_CH, "topic.news")] == "opt-in"
    assert state.consents[ConsentKey("sec.main", SMS_CH, "topic.sms")] == "opt-in"
