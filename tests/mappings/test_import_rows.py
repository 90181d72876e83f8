"""mappings.import_rows: a customer's import rows carry what the per-profile plan would write."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.import_rows import (
    MAX_VALUE_CHARS,
    PROFILE_KEY_COLUMN,
    Layout,
    attribute_column,
    cell,
    consent_column,
    csv_line,
    import_request,
    layouts,
    refusal,
    route_customer,
)
from mappings.installation import Condition
from mappings.normalize import normalize_customer
from mappings.plan import plan_sync
from mappings.writes import AttributePatch, ConsentWrite
from tests.mappings import payloads as p

EMAIL_CH = "com.apsis1.channels.email"
SMS_CH = "com.apsis1.channels.sms"
ADDRESSES = {"sec.main": {"email": "901", "sms": "902"}}
SHOP = p.shop(p.section())
FILES = layouts(SHOP, ADDRESSES)


def customer(**overrides: Any) -> Any:
    return normalize_customer(p.rest_2024_10(**overrides))


def route(payload: Any, stored: Any = None) -> Any:
    return route_customer(SHOP, stored, payload, ADDRESSES, FILES)


def rows_by_kind(routed: Any) -> dict[str, dict[str, str]]:
    out = {}
    for row in routed.rows:
        header = FILES[(row.section, row.kind)].header()
        out[row.kind] = dict(zip(header, row.cells, strict=True))
    return out


def test_layout_in_carries_every_mapped_and_address_attribute_and_opt_in_topics() -> None:
    inn = FILES[("sec.main", "in")]
    assert inn.attributes == ("1", "2", "3", "4", "5", "901", "902")
    assert inn.consents == ((EMAIL_CH, "topic.news"), (EMAIL_CH, "topic.offers"), (SMS_CH, "topic.sms"))
    out = FILES[("sec.main", "out")]
    assert out.attributes == ("901", "902")
    assert out.header()[0] == PROFILE_KEY_COLUMN


def test_import_request_fixes_the_type_and_never_resubscribes() -> None:
    body = import_request("ks.test", FILES[("sec.main", "out")])
    assert body["keyspace_mapping"] == {"keyspace_discriminator": "ks.test", "field_selector": "profile_key"}
    assert body["options"]["clear_existing_attributes"] is False
    consents = [c for m in body["consent_mappings"] for c in m["consents"]]
    assert {c["type"] for c in consents} == {"opt-out"}
    assert all(c["resubscribe_if_opted_out"] is False for c in consents)
    selectors = {m["address_field_selector"] for m in body["consent_mappings"]}
    assert selectors == {attribute_column("901"), attribute_column("902")}
    inn = import_request("ks.test", FILES[("sec.main", "in")])
    assert inn["options"] == {"update_existing_profiles": True, "clear_existing_attributes": True}
    assert {c["type"] for m in inn["consent_mappings"] for c in m["consents"]} == {"opt-in"}


@pytest.mark.parametrize(
    ("email_state", "sms_state", "opt_in", "opt_out"),
    [
        ("subscribed", "subscribed", {"topic.news", "topic.offers", "topic.sms"}, set()),
        ("unsubscribed", "subscribed", {"topic.sms"}, {"topic.news", "topic.offers"}),
        ("not_subscribed", "unsubscribed", set(), {"topic.sms"}),
        ("pending", "not_subscribed", set(), set()),
        ("invalid", "redacted", set(), {"topic.news", "topic.offers", "topic.sms"}),
    ],
)
def test_first_sync_consent_columns(
    email_state: str, sms_state: str, opt_in: set[str], opt_out: set[str]
) -> None:
    snap = customer(
        email_marketing_consent={"state": email_state, "consent_updated_at": "2024-11-05T18:00:00Z"},
        sms_marketing_consent={"state": sms_state, "consent_updated_at": "2024-11-05T18:00:00Z"},
    )
    routed = route(snap)
    assert routed.route == "import"
    rows = rows_by_kind(routed)
    got_in = {k.rsplit(":", 1)[1] for k, v in rows["in"].items() if k.startswith("consent:") and v}
    assert got_in == opt_in
    got_out = (
        {k.rsplit(":", 1)[1] for k, v in rows["out"].items() if k.startswith("consent:") and v}
        if "out" in rows
        else set()
    )
    assert got_out == opt_out
    assert ("out" in rows) == bool(opt_out)


def test_row_values_are_the_plans_attributes() -> None:
    snap = customer()
    routed = route(snap)
    plan = plan_sync(SHOP, None, snap, address_attributes=ADDRESSES)
    patch = next(w for w in plan.writes if isinstance(w, AttributePatch))
    row = rows_by_kind(routed)["in"]
    for version_id, value in patch.body.items():
        text = "true" if value is True else "false" if value is False else str(value)
        assert row[attribute_column(version_id)] == text
    assert routed.state == plan.state


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"email": "not-an-address"}, "not an email address"),
        ({"phone": "0701234567"}, "E.164"),
        ({"first_name": "x" * (MAX_VALUE_CHARS + 1)}, "characters"),
    ],
)
def test_rows_apsis_would_reject_are_refused_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    routed = route(customer(**overrides))
    assert routed.route == "refused"
    assert reason in routed.reason
    assert routed.rows == ()


def test_a_synced_customer_whose_consent_changed_goes_per_profile() -> None:
    first = customer()
    stored = plan_sync(SHOP, None, first, address_attributes=ADDRESSES).state
    later = customer(
        updated_at="2024-12-01T10:00:00Z",
        email_marketing_consent={"state": "unsubscribed", "consent_updated_at": "2024-12-01T10:00:00Z"},
    )
    routed = route(later, stored)
    assert routed.route == "per_profile"
    assert "consent" in routed.reason


def test_a_synced_customer_whose_email_changed_goes_per_profile() -> None:
    stored = plan_sync(SHOP, None, customer(), address_attributes=ADDRESSES).state
    routed = route(customer(updated_at="2024-12-01T10:00:00Z", email="new@example.com"), stored)
    assert routed.route == "per_profile"
    assert "address" in routed.reason


def test_stale_unchanged_and_outside_every_section() -> None:
    stored = plan_sync(
        SHOP, None, customer(updated_at="2025-01-01T00:00:00Z"), address_attributes=ADDRESSES
    ).state
    assert route(customer(), stored).route == "stale"
    assert route(customer(updated_at="2025-01-01T00:00:00Z"), stored).route == "unchanged"
    shop = p.shop(p.section(conditions=(Condition("tags", "contains", "nope"),)))
    files = layouts(shop, ADDRESSES)
    assert route_customer(shop, None, customer(), ADDRESSES, files).route == "skipped"


def test_a_synced_customer_with_changed_attributes_only_is_imported() -> None:
    stored = plan_sync(SHOP, None, customer(), address_attributes=ADDRESSES).state
    routed = route(customer(updated_at="2024-12-01T10:00:00Z", first_name="Robert"), stored)
    assert routed.route == "import"
    assert rows_by_kind(routed)["in"][attribute_column("2")] == "Robert"


def test_a_same_second_snapshot_with_other_values_goes_per_profile() -> None:
    """Two edits in one second: the row could carry the older one; the worker reads the customer."""
    stored = plan_sync(SHOP, None, customer(), address_attributes=ADDRESSES).state
    routed = route(customer(first_name="Robert"), stored)
    assert routed.route == "per_profile" and "updated_at" in routed.reason


def test_csv_line_quotes() -> None:
    line = csv_line(["1", 'a "b", c', "", "x\ny"]).decode()
    assert next(csv.reader(io.StringIO(line, newline=""))) == ["1", 'a "b", c', "", "x\ny"]


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
states = st.sampled_from(["subscribed", "not_subscribed", "pending", "unsubscribed", "redacted", "invalid"])


@settings(max_examples=150, deadline=None)
@given(names, names, st.lists(names.filter(lambda t: "," not in t), max_size=4), states, states)
def test_rows_round_trip_and_match_the_plan(
    first: str, last: str, tags: list[str], email_state: str, sms_state: str
) -> None:
    """Whatever the customer: every row parses back to its cells, and together the rows hold the
    plan's attribute values and exactly its consent writes (an import file per type)."""
    snap = customer(
        first_name=first,
        last_name=last,
        tags=", ".join(tags),
        email_marketing_consent={"state": email_state, "consent_updated_at": "2024-11-05T18:00:00Z"},
        sms_marketing_consent={"state": sms_state, "consent_updated_at": "2024-11-05T18:00:00Z"},
    )
    routed = route(snap)
    assert routed.route == "import"
    plan = plan_sync(SHOP, None, snap, address_attributes=ADDRESSES)
    planned = {(w.channel, w.topic, w.type) for w in plan.writes if isinstance(w, ConsentWrite)}
    patched = {w.section: w.body for w in plan.writes if isinstance(w, AttributePatch)}
    written: set[tuple[str, str, str]] = set()
    for row in routed.rows:
        layout: Layout = FILES[(row.section, row.kind)]
        parsed = next(csv.reader(io.StringIO(row.csv().decode(), newline="")))
        assert parsed == list(row.cells)
        assert len(parsed) == len(layout.header())
        # The attribute cells are the values a first per-profile sync patches ("" for a null).
        body = patched.get(row.section, {})
        assert list(row.cells[1 : 1 + len(layout.attributes)]) == [
            cell(body.get(v)) for v in layout.attributes
        ]
        for (channel, topic), mark in zip(layout.consents, row.cells[-len(layout.consents) :], strict=True):
            if mark:
                written.add((channel, topic, "opt-in" if row.kind == "in" else "opt-out"))
    assert written == planned
    assert refusal(FILES[("sec.main", "in")], {"1": "a@b.se", "5": "+46701234567"}) is None
    assert consent_column(EMAIL_CH, "t") != consent_column(SMS_CH, "t")


def _parse_sync(extra: str) -> Any:
    from mappings.installation_parse import parse_installations_toml

    text = p.DEMO_TOML.read_text()
    return parse_installations_toml(text + f"\n[shop.sync]\n{extra}\n" if extra else text, {}, "demo.toml")


def test_import_threshold_default_zero_and_bad_values() -> None:
    from mappings.installation import InstallationError

    text = p.DEMO_TOML.read_text()
    assert "[shop.sync]" not in text  # the demo file leaves the table out: the default applies
    shop = _parse_sync("").get("demo-store.myshopify.com")
    assert shop is not None and shop.sync.import_threshold == 5000
    shop = _parse_sync("import_threshold = 0").get("demo-store.myshopify.com")
    assert shop is not None and shop.sync.import_threshold == 0
    for bad in ("-1", "1.5", '"many"', "true"):
        with pytest.raises(InstallationError, match="import_threshold"):
            _parse_sync(f"import_threshold = {bad}")
