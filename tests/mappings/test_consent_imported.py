"""Opt-outs a profile import wrote count as ours in the opt-in guard (mappings.consent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mappings.consent import (
    IMPORT_CLOCK_SLACK_S,
    ApsisConsent,
    guard_opt_ins,
    imported_mark,
    written_by_us,
)
from mappings.writes import OPT_IN, OPT_OUT, ConsentKey, ConsentWrite

KEY = ConsentKey("s", "com.apsis1.channels.email", "news")
OTHER = ConsentKey("s", "com.apsis1.channels.email", "offers")
IMPORTED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MARKS = {imported_mark(KEY): IMPORTED_AT.timestamp()}


@pytest.mark.parametrize(
    ("key", "kind", "modified_at", "source_ours", "marks", "ours"),
    [
        (KEY, OPT_OUT, None, True, {}, True),  # our source: ours, whatever else
        (KEY, OPT_IN, IMPORTED_AT, True, {}, True),
        (KEY, OPT_OUT, IMPORTED_AT - timedelta(minutes=5), False, MARKS, True),  # the import's
        (KEY, OPT_OUT, IMPORTED_AT + timedelta(seconds=IMPORT_CLOCK_SLACK_S / 2), False, MARKS, True),
        (KEY, OPT_OUT, IMPORTED_AT + timedelta(minutes=1), False, MARKS, False),  # given after it
        (KEY, OPT_OUT, IMPORTED_AT, False, {}, False),  # no mark: not ours
        (OTHER, OPT_OUT, IMPORTED_AT, False, MARKS, False),  # the mark names another topic
        (KEY, OPT_OUT, None, False, MARKS, False),  # no time: cannot tell, not ours
        (KEY, OPT_IN, IMPORTED_AT, False, MARKS, False),  # marks are for opt-outs only
    ],
)
def test_written_by_us(
    key: ConsentKey,
    kind: str,
    modified_at: datetime | None,
    source_ours: bool,
    marks: dict[str, float],
    ours: bool,
) -> None:
    assert written_by_us(key, kind, modified_at, source_ours, marks) is ours


def test_an_imported_opt_out_lets_an_older_shopify_opt_in_through_and_a_later_hand_opt_out_does_not() -> None:
    opt_in = ConsentWrite("s", KEY.channel, KEY.topic, OPT_IN, "1")
    # Shopify's subscribe happened while the import ran: older than APSIS's stamp of the import's opt-out.
    shopify = {KEY.channel: IMPORTED_AT - timedelta(minutes=2)}
    imported_out = IMPORTED_AT - timedelta(seconds=30)
    ours = written_by_us(KEY, OPT_OUT, imported_out, False, MARKS)
    guarded = guard_opt_ins((opt_in,), {KEY: ApsisConsent(OPT_OUT, imported_out, ours)}, shopify)
    assert guarded.writes == (opt_in,) and guarded.kept_in_apsis == {}
    by_hand = IMPORTED_AT + timedelta(hours=1)
    ours = written_by_us(KEY, OPT_OUT, by_hand, False, MARKS)
    guarded = guard_opt_ins((opt_in,), {KEY: ApsisConsent(OPT_OUT, by_hand, ours)}, shopify)
    assert guarded.writes == () and guarded.kept_in_apsis == {KEY: OPT_OUT}
