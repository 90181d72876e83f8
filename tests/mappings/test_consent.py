from __future__ import annotations

from itertools import product
from typing import Any

import pytest

from mappings.consent import consent_writes, decide, mapped_decisions
from mappings.snapshot import CONSENT_STATES, UNKNOWN
from mappings.writes import ConsentType, ConsentWrite
from tests.mappings import payloads as p

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
    written: dict[str, ConsentType] = {"topic.news": "opt-in", "topic.offers": "opt-out"}
    writes = consent_writes(mapping, "sec", "a@b.c", desired, written)
    assert writes == [
        ConsentWrite(
            "com.apsis1.channels.email", "a@b.c", "sec", mapping.consent_list, "topic.offers", "opt-in"
        )
    ]
    assert len(consent_writes(mapping, "sec", "a@b.c", desired, written, force=True)) == 2
    assert mapped_decisions(mapping, "not_subscribed", "not_subscribed") == {}


def test_sms_channel_discriminator() -> None:
    [write] = consent_writes(p.SMS, "sec", "+4670", mapped_decisions(p.SMS, "unsubscribed", None), {})
    assert write.channel == "com.apsis1.channels.sms" and write.type == "opt-out"
