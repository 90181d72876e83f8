"""The support window of Shopify API versions (pure)."""

from __future__ import annotations

from datetime import date

from worker.shopify_versions import newest_stable, supported_until, version_warning

DEC_2026 = date(2026, 12, 6)


def test_window_and_newest() -> None:
    assert supported_until("2026-01") == date(2027, 1, 1)
    assert supported_until("unstable") is None
    assert newest_stable(DEC_2026) == "2026-10"
    assert newest_stable(date(2027, 1, 1)) == "2027-01"


def test_warnings_name_the_version_to_move_to() -> None:
    assert version_warning("2026-10", DEC_2026) is None
    assert version_warning("2026-04", DEC_2026) is None
    near = version_warning("2026-01", DEC_2026)
    assert near is not None and "2027-01-01" in near and "2026-10" in near
    past = version_warning("2024-10", DEC_2026)
    assert past is not None and "past Shopify's support window" in past and past.endswith("move to 2026-10")
    bad = version_warning("2024-11", DEC_2026)
    assert bad is not None and "not a Shopify API version" in bad
    assert version_warning("unstable", DEC_2026) is None
