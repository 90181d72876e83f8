"""Which limit a 429 on a profile route is taken for (worker/apsis_refusals.py)."""

from __future__ import annotations

import pytest

from worker.apsis_refusals import WINDOW_S, RefusalAttribution


@pytest.mark.parametrize(
    ("refusals", "expected"),
    [
        ([("a", 0.0)], [False]),  # alone: the profile's
        ([("a", 0.0), ("a", 0.2)], [False, False]),  # the same key again: still its own
        ([("a", 0.0), ("b", 0.2)], [False, True]),  # another key within the window: the account's
        ([("a", 0.0), ("b", WINDOW_S + 0.1)], [False, False]),  # too far apart
        ([("a", 0.0), ("b", 0.1), ("c", 0.2), ("c", 0.3)], [False, True, True, False]),
    ],
)
def test_two_keys_refused_within_the_window_are_the_account(
    refusals: list[tuple[str, float]], expected: list[bool]
) -> None:
    attribution = RefusalAttribution()
    assert [attribution.account_wide(key, at) for key, at in refusals] == expected
