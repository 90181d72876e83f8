"""mappings.audit: one customer's expected state against what APSIS holds, as a table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mappings.audit import (
    Difference,
    Held,
    Report,
    ReportPart,
    compare,
    forget_written,
    held_from_report,
    report_cells,
    report_parts,
    same_value,
    unsettled_sections,
)
from mappings.consent import ApsisConsent
from mappings.state import SyncState
from mappings.writes import ConsentKey, ConsentType
from tests.mappings.payloads import section, shop

S = "sec.main"
EMAIL = "com.apsis1.channels.email"
SMS = "com.apsis1.channels.sms"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
EARLIER = datetime(2023, 1, 1, tzinfo=UTC)
LATER = datetime(2025, 1, 1, tzinfo=UTC)
SHOP = shop(section(S))
CID = 7


def expected(
    consents: dict[tuple[str, str], ConsentType] | None = None, attributes: dict[str, Any] | None = None
) -> SyncState:
    return SyncState(
        customer_id=CID,
        times={"email_consent": T0, "sms_consent": T0},
        sections=(S,),
        attributes={S: {"1": "a@example.com", "2": "Ann", "3": None} if attributes is None else attributes},
        consents={ConsentKey(S, c, t): k for (c, t), k in (consents or {}).items()},
    )


def held(
    attributes: dict[str, Any] | None = None, consents: dict[tuple[str, str], ApsisConsent] | None = None
) -> Held:
    return Held(
        exists=True,
        attributes={S: {"1": "a@example.com", "2": "Ann"} if attributes is None else attributes},
        consents={S: consents or {}},
    )


def theirs(kind: str, at: datetime | None) -> ApsisConsent:
    return ApsisConsent(kind, at, ours=False)


def ours(kind: str, at: datetime | None) -> ApsisConsent:
    return ApsisConsent(kind, at, ours=True)


NEWS = (EMAIL, "topic.news")
DRIFT_NEWS = Difference(CID, "consent", S, f"{EMAIL} topic.news")

CASES: list[tuple[str, SyncState | None, Held, list[Difference]]] = [
    ("in sync", expected(), held(), []),
    ("deleted in Shopify, no profile", None, Held(exists=False), []),
    (
        "deleted in Shopify, profile left",
        None,
        Held(exists=True),
        [Difference(CID, "extra", detail="deleted")],
    ),
    (
        "in no section, profile left",
        SyncState(customer_id=CID),
        Held(exists=True),
        [Difference(CID, "extra", detail="fails_conditions")],
    ),
    ("in no section, no profile", SyncState(customer_id=CID), Held(exists=False), []),
    ("missing profile", expected(), Held(exists=False), [Difference(CID, "missing")]),
    (
        "attribute edited",
        expected(),
        held({"1": "a@example.com", "2": "Bob"}),
        [Difference(CID, "attribute", S, "2")],
    ),
    ("attribute gone", expected(), held({"1": "a@example.com"}), [Difference(CID, "attribute", S, "2")]),
    (
        "a cleared value held",
        expected(),
        held({"1": "a@example.com", "2": "Ann", "3": "x"}),
        [Difference(CID, "attribute", S, "3")],
    ),
    ("number held as text", expected(attributes={"4": 12.0}), held({"4": "12"}), []),
    ("opt-in held", expected({NEWS: "opt-in"}), held(consents={NEWS: ours("opt-in", T0)}), []),
    (
        "confirmed opt-in held",
        expected({NEWS: "opt-in"}),
        held(consents={NEWS: theirs("confirmed-opt-in", T0)}),
        [],
    ),
    ("opt-in missing", expected({NEWS: "opt-in"}), held(), [DRIFT_NEWS]),
    (
        "our opt-out over Shopify's opt-in",
        expected({NEWS: "opt-in"}),
        held(consents={NEWS: ours("opt-out", LATER)}),
        [DRIFT_NEWS],
    ),
    (
        "APSIS opt-out older than Shopify's opt-in",
        expected({NEWS: "opt-in"}),
        held(consents={NEWS: theirs("opt-out", EARLIER)}),
        [DRIFT_NEWS],
    ),
    (
        "APSIS opt-out newer: the contact's choice",
        expected({NEWS: "opt-in"}),
        held(consents={NEWS: theirs("opt-out", LATER)}),
        [],
    ),
    (
        "APSIS opt-out without a time: kept",
        expected({NEWS: "opt-in"}),
        held(consents={NEWS: theirs("opt-out", None)}),
        [],
    ),
    (
        "opted in against Shopify's opt-out",
        expected({NEWS: "opt-out"}),
        held(consents={NEWS: theirs("opt-in", LATER)}),
        [DRIFT_NEWS],
    ),
    ("opt-out, nothing held", expected({NEWS: "opt-out"}), held(), []),
    ("no decision: APSIS's own opt-in", expected(), held(consents={NEWS: theirs("opt-in", LATER)}), []),
    ("unmapped topic ignored", expected(), held(consents={(EMAIL, "topic.other"): theirs("opt-in", T0)}), []),
    (
        "sms channel",
        expected({(SMS, "topic.sms"): "opt-in"}),
        held(),
        [Difference(CID, "consent", S, f"{SMS} topic.sms")],
    ),
]


@pytest.mark.parametrize(("name", "want", "got", "differences"), CASES, ids=[c[0] for c in CASES])
def test_compare(name: str, want: SyncState | None, got: Held, differences: list[Difference]) -> None:
    assert compare(SHOP, CID, want, got) == differences


def test_left_section_is_not_compared() -> None:
    two = shop(section(S), section("sec.vip"))
    state = expected()
    assert compare(two, CID, state, held()) == []


@pytest.mark.parametrize(
    ("got", "want", "same"),
    [
        (None, None, True),
        ("a", None, False),
        (None, "a", False),
        (1, "1", True),
        (True, "true", True),
        ("a", "b", False),
    ],
)
def test_same_value(got: Any, want: Any, same: bool) -> None:
    assert same_value(got, want) is same


def test_report_counts_and_first_examples_without_values() -> None:
    report = Report(limit=2)
    for cid in range(5):
        report.add([Difference(cid, "attribute", S, "2")])
    report.add([Difference(9, "missing")])
    out = report.to_json()
    assert (out["attribute"], out["missing"], out["extra"], out["consent"]) == (5, 1, 0, 0)
    assert [e["customer_id"] for e in out["examples"]["attribute"]] == [0, 1]
    assert "@" not in str(out)
    assert report.drift == 6


def test_forget_written() -> None:
    state = SyncState(
        customer_id=CID,
        times={"customer": T0},
        sections=(S,),
        attributes={S: {"1": "a", "2": "b"}},
        consents={
            ConsentKey(S, EMAIL, "topic.news"): "opt-in",
            ConsentKey(S, EMAIL, "topic.offers"): "opt-in",
        },
    )
    after = forget_written(state, [Difference(CID, "attribute", S, "2"), DRIFT_NEWS])
    assert after.attributes == {S: {"1": "a"}}
    assert after.consents == {ConsentKey(S, EMAIL, "topic.offers"): "opt-in"}
    assert after.times == state.times and after.sections == state.sections
    gone = forget_written(state, [Difference(CID, "missing")])
    assert gone.attributes == {} and gone.consents == {}


# --- the consent report path -----------------------------------------------------------------

ADDRESSES = {S: {"email": "1", "sms": "9"}}


def test_an_old_address_opted_in_is_noted() -> None:
    moved = held({"1": "old@example.com", "2": "Ann"}, {NEWS: theirs("opt-in", T0)})
    assert compare(SHOP, CID, expected(), moved, ADDRESSES) == [
        Difference(CID, "attribute", S, "1", "old_address")
    ]
    not_opted = held({"1": "old@example.com", "2": "Ann"})
    assert compare(SHOP, CID, expected(), not_opted, ADDRESSES) == [Difference(CID, "attribute", S, "1")]
    report = Report()
    report.add(compare(SHOP, CID, expected(), moved, ADDRESSES))
    assert report.to_json()["old_address"] == 1 and report.counts["attribute"] == 1


def test_report_parts_ask_one_report_per_topic_with_the_attributes_on_the_first() -> None:
    parts = report_parts(SHOP, ADDRESSES)
    mapping = SHOP.sections[0]
    topics = [t for m in mapping.consents for t in m.topics]
    assert [p.topic for p in parts] == list(dict.fromkeys(topics))
    assert parts[0].attributes == tuple(sorted({*mapping.attributes.values(), "1", "9"}))
    assert all(p.attributes == () for p in parts[1:])
    no_consent = shop(section(S, email=None, sms=None))
    assert report_parts(no_consent, {}) == []
    assert report_parts(no_consent, {}, {S: "topic.any"}) == [
        ReportPart(S, "topic.any", (), tuple(sorted(no_consent.sections[0].attributes.values())))
    ]


def test_held_from_report_rows() -> None:
    parts = [ReportPart(S, "topic.news", ("email",), ("1", "2")), ReportPart(S, "topic.sms", ("sms",))]
    row0 = report_cells(
        parts[0], {"profile_key": "7", "email": "a@example.com", "1": "a@example.com", "2": ""}
    )
    row1 = report_cells(parts[1], {"profile_key": "7", "sms": ""})
    assert row0 == {"c": ["email"], "a": {"1": "a@example.com", "2": ""}}
    got = held_from_report(parts, [row0, row1])
    assert got.exists and got.attributes == {S: {"1": "a@example.com"}}
    assert got.consents == {S: {NEWS: ApsisConsent("opt-in", None)}}
    assert held_from_report(parts, [None, None]) == Held(exists=False, attributes={}, consents={})


def test_unsettled_sections_name_a_shopify_opt_in_the_report_does_not_show() -> None:
    want = expected({NEWS: "opt-in"})
    assert unsettled_sections(SHOP, want, held(consents={NEWS: ApsisConsent("opt-in", None)})) == []
    assert unsettled_sections(SHOP, want, held()) == [S]
    assert unsettled_sections(SHOP, expected({NEWS: "opt-out"}), held()) == []
    assert unsettled_sections(SHOP, want, Held(exists=False)) == []


@pytest.mark.parametrize(
    ("got", "want", "same"),
    [
        ("795.0", 795.0, True),
        ("795", 795, True),
        ("12.5", 12.5, True),
        ("12.50", 12.4, False),
        ("x", 1, False),
    ],
)
def test_report_cells_compare_numbers_as_numbers(got: str, want: float, same: bool) -> None:
    assert same_value(got, want) is same
