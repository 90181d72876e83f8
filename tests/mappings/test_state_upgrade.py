"""A deployment upgraded from the Consent 1.0 version: its saved sync states (format 1) plan no
consent write for a consent that did not change: no opt-in or opt-out storm."""

from __future__ import annotations

from typing import Any

from mappings.normalize import normalize_customer
from mappings.plan import plan_sync
from mappings.state import SyncState, consent_of
from mappings.writes import ConsentKey, ConsentWrite
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
NEWS_LIST = "com.apsis1.consent-lists.newsletter"
SMS_LIST = "com.apsis1.consent-lists.sms"


def _consent_1_state() -> dict[str, Any]:
    """A state as the Consent 1.0 version saved it (`SyncState.to_dict` with `"v": 1`), after the
    customer of `payloads.rest_2024_10` was synced, their email once changed from an old address."""
    snapshot = normalize_customer(p.rest_2024_10())
    current = plan_sync(p.shop(), None, snapshot).state
    assert current is not None
    data = current.to_dict()
    data["v"] = 1
    data["consents"] = [
        [EMAIL_CH, "bob@example.com", "sec.main", NEWS_LIST, "topic.news", "opt-in"],
        [EMAIL_CH, "bob@example.com", "sec.main", NEWS_LIST, "topic.offers", "opt-in"],
        [SMS_CH, "+46701234567", "sec.main", SMS_LIST, "topic.sms", "opt-in"],
        # A former address's opt-out, written by the old email change: history, not the profile's.
        [EMAIL_CH, "old@example.com", "sec.main", NEWS_LIST, "topic.news", "opt-out"],
    ]
    return data


def test_format_1_keeps_the_current_addresses_consents_on_the_profile() -> None:
    state = SyncState.from_dict(_consent_1_state())
    assert state.consents == {
        ConsentKey("sec.main", EMAIL_CH, "topic.news"): "opt-in",
        ConsentKey("sec.main", EMAIL_CH, "topic.offers"): "opt-in",
        ConsentKey("sec.main", SMS_CH, "topic.sms"): "opt-in",
    }
    assert state.to_dict()["v"] == 2
    assert SyncState.from_dict(state.to_dict()) == state
    for key, kind in state.consents.items():  # read from the format 1 JSON as it stands
        assert consent_of(_consent_1_state(), key) == kind
    assert consent_of(_consent_1_state(), ConsentKey("sec.main", EMAIL_CH, "topic.gone")) is None


def test_upgraded_state_plans_no_consent_write_for_unchanged_consent() -> None:
    state = SyncState.from_dict(_consent_1_state())
    again = normalize_customer(p.rest_2024_10(updated_at="2024-12-01T00:00:00Z", first_name="Bobby"))
    plan = plan_sync(p.shop(), state, again)
    assert [w for w in plan.writes if isinstance(w, ConsentWrite)] == []
    assert plan.writes  # the first name still goes


def test_upgraded_state_still_writes_a_real_consent_change() -> None:
    state = SyncState.from_dict(_consent_1_state())
    out = {"state": "unsubscribed", "opt_in_level": None, "consent_updated_at": "2024-12-01T00:00:00Z"}
    plan = plan_sync(
        p.shop(),
        state,
        normalize_customer(p.rest_2024_10(updated_at="2024-12-01T00:00:00Z", email_marketing_consent=out)),
    )
    assert [(w.topic, w.type) for w in plan.writes if isinstance(w, ConsentWrite)] == [
        ("topic.news", "opt-out"),
        ("topic.offers", "opt-out"),
    ]
