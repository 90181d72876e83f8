"""The import verification's comparison of a consent report's row with an expected state (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.fullsync.import_compare import ADDRESS, differs, in_files

SECTION, EMAIL, TOPIC = "sec.main", "com.apsis1.channels.email", "topic.news"
STATE: dict[str, Any] = {
    "v": 2,
    "customer_id": 1,
    "attributes": {SECTION: {"v-name": "Ann", "v-spent": 795, "v-vip": True}},
    "consents": [[SECTION, EMAIL, TOPIC, "opt-in"], [SECTION, EMAIL, "topic.offers", "opt-out"]],
}


@pytest.mark.parametrize(
    ("topic", "row", "attributes", "reason"),
    [
        (TOPIC, {ADDRESS: "a@x.se"}, [], None),
        (TOPIC, {ADDRESS: ""}, [], f"{EMAIL} {TOPIC}: not opted in"),
        ("topic.offers", {ADDRESS: "a@x.se"}, [], f"{EMAIL} topic.offers: still opted in"),
        ("topic.offers", {ADDRESS: ""}, [], None),
        ("topic.other", {ADDRESS: "a@x.se"}, [], None),  # nothing expected of it: not compared
        # Report cells are text: a number may come back as 795.0, a boolean as True.
        (
            TOPIC,
            {ADDRESS: "a@x.se", "v-name": "Ann", "v-spent": "795.0", "v-vip": "True"},
            ["v-name", "v-spent", "v-vip"],
            None,
        ),
        (TOPIC, {ADDRESS: "a@x.se", "v-name": "Bo"}, ["v-name"], "attribute v-name differs"),
        (TOPIC, {ADDRESS: "a@x.se", "v-spent": ""}, ["v-spent"], "attribute v-spent differs"),
        (TOPIC, {ADDRESS: "a@x.se", "v-unknown": "x"}, ["v-unknown"], None),  # no value expected
        ("", {"v-name": "Ann"}, ["v-name"], None),  # a sample read: attributes only
    ],
)
def test_differs(topic: str, row: dict[str, str], attributes: list[str], reason: str | None) -> None:
    assert differs(STATE, SECTION, EMAIL, topic, row, attributes) == reason


@pytest.mark.parametrize(
    ("held", "completed", "expected"),
    [(b"3", {3}, True), (b"1,3", {3}, True), ("1,2", {3}, False), (None, {3}, False), (b"", {0}, False)],
)
def test_in_files(held: Any, completed: set[int], expected: bool) -> None:
    assert in_files(held, completed) is expected
