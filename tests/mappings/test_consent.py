from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest

from mappings.consent import ApsisConsent, consent_writes, decide, guard_opt_ins, mapped_decisions
from mappings.snapshot import CONSENT_STATES, UNKNOWN
from mappings.writes import AttributePatch, ConsentKey, ConsentType, ConsentWrite
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
STATES = sorted(CONSENT_STATES)
PREVIOUS = [*STATES, None, UNKNOWN]


def _expected(state: str, previous: Any) -> str | None:
    if state == "subscribed":
        return "opt-in"
    if state in ("unsubscribed", "redacted", "invalid"):
        return "opt-out"
    return "opt-out" if previous == "subscribed" else None


@pytest.mark.parametrize(("state", "previous"), list(product(STATES, PREVIOUS)))
def test_every_transition(state: str, previous: Any) -> None:
    assert decide(state, previous) == _expected(state, previous)


@pytest.mark.parametrize(
    ("state", "previous", "expected"),
    [
        ("subscribed", "not_subscribed", "opt-in"),
        ("subscribed", "subscribed", "opt-in"),
        ("unsubscribed", "subscribed", "opt-out"),
        ("redacted", None, "opt-out"),
        ("invalid", UNKNOWN, "opt-out"),
        ("not_subscribed", "subscribed", "opt-out"),
        ("pending", "subscribed", "opt-out"),
        ("not_subscribed", "unsubscribed", None),
        ("pending", "not_subscribed", None),
        ("not_subscribed", None, None),
        (None, "subscribed", None),  # consent null (no email): no write
        (UNKNOWN, "subscribed", None),  # payload without consent: no write
    ],
)
def test_decision_table(state: Any, previous: Any, expected: str | None) -> None:
    assert decide(state, previous) == expected


def test_writes_only_what_changed() -> None:
    mapping = p.EMAIL
    desired = mapped_decisions(mapping, "subscribed", None)
    assert desired == {"topic.news": "opt-in", "topic.offers": "opt-in"}
    written: dict[ConsentKey, ConsentType] = {
        ConsentKey("sec", EMAIL_CH, "topic.news"): "opt-in",
        ConsentKey("sec", EMAIL_CH, "topic.offers"): "opt-out",
    }
    writes = consent_writes(mapping, "sec", "42", desired, written)
    assert writes == [ConsentWrite("sec", EMAIL_CH, "topic.offers", "opt-in", "42")]
    assert mapped_decisions(mapping, "not_subscribed", "not_subscribed") == {}


def test_sms_channel_discriminator() -> None:
    [write] = consent_writes(p.SMS, "sec", "42", mapped_decisions(p.SMS, "unsubscribed", None), {})
    assert write.channel == "com.apsis1.channels.sms" and write.type == "opt-out"


T0 = datetime(2025, 1, 1, tzinfo=UTC)
NEWS = ConsentKey("sec", EMAIL_CH, "topic.news")


def _opt_in(topic: str = "topic.news") -> ConsentWrite:
    return ConsentWrite("sec", EMAIL_CH, topic, "opt-in", "42")


@pytest.mark.parametrize(
    ("apsis", "shopify_at", "sent", "held"),
    [
        ({}, T0, True, None),  # APSIS has nothing: the opt-in goes
        ({NEWS: ApsisConsent("opt-in", T0)}, T0, False, "opt-in"),  # already there: no request
        ({NEWS: ApsisConsent("confirmed-opt-in", T0)}, T0, False, "opt-in"),
        # an unsubscribe link clicked after the Shopify consent: the opt-out stays
        ({NEWS: ApsisConsent("opt-out", T0 + timedelta(hours=1))}, T0, False, "opt-out"),
        # the customer subscribed in Shopify after opting out in APSIS: Shopify's newer word goes
        ({NEWS: ApsisConsent("opt-out", T0)}, T0 + timedelta(hours=1), True, None),
        # same instant, or a time unknown on either side: the opt-out stays
        ({NEWS: ApsisConsent("opt-out", T0)}, T0, False, "opt-out"),
        ({NEWS: ApsisConsent("opt-out", None)}, T0, False, "opt-out"),
        ({NEWS: ApsisConsent("opt-out", T0)}, None, False, "opt-out"),
        ({NEWS: ApsisConsent("pending-opt-in", T0)}, T0, True, None),
        # our own opt-out, sent late for an older Shopify state: Shopify's subscribe goes
        ({NEWS: ApsisConsent("opt-out", T0 + timedelta(hours=1), ours=True)}, T0, True, None),
    ],
)
def test_guard_opt_ins(
    apsis: dict[ConsentKey, ApsisConsent], shopify_at: datetime | None, sent: bool, held: str | None
) -> None:
    write = _opt_in()
    guarded = guard_opt_ins((write,), apsis, {EMAIL_CH: shopify_at})
    assert (write in guarded.writes) is sent
    assert guarded.kept_in_apsis.get(NEWS) == held


def test_guard_passes_opt_outs_and_other_writes() -> None:
    out = ConsentWrite("sec", EMAIL_CH, "topic.news", "opt-out", "42")
    patch = AttributePatch("sec", {"1": "a@b.c"}, "42")
    apsis = {NEWS: ApsisConsent("opt-out", T0 + timedelta(days=1))}
    guarded = guard_opt_ins((patch, out, _opt_in("topic.offers")), apsis, {EMAIL_CH: T0})
    assert guarded.writes == (patch, out, _opt_in("topic.offers")) and guarded.kept_in_apsis == {}
