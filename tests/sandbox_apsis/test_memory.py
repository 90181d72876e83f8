"""What the account keeps per write stays small: the write log and the events hold JSON bytes at
their own size (orjson's answers carry a buffer of about 4 KB: a million log entries would be
4 GB, and the page faults a third of the sandbox's CPU during an import)."""

from __future__ import annotations

import tracemalloc

import orjson

from sandbox.apsis import KEYSPACE, SECTION
from sandbox.apsis.account import default_account
from sandbox.apsis.values import kept_json

WRITES = 2_000


def test_kept_json_is_the_same_document() -> None:
    for value in ({}, {"a": [1, 2.5, None, "é"]}, [{"count": 3, "version_ids": ["2001"]}]):
        assert kept_json(value) == orjson.dumps(value)


def test_a_write_costs_well_under_a_kilobyte() -> None:
    account = default_account()
    account.disable_rate_limits()
    event = {"event_time": "2024-10-01T12:00:00Z", "version_id": "2001", "data": {"id": 1}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(WRITES):
            account.patch_attributes(KEYSPACE, str(n), SECTION, {"1001": f"c{n}@example.com"})
            account.add_events(KEYSPACE, str(n), SECTION, {"items": [event]})
        per_write = (tracemalloc.get_traced_memory()[0] - before) / (2 * WRITES)
    finally:
        tracemalloc.stop()
    assert len(account.writes) == 2 * WRITES
    assert per_write < 1024, f"{per_write:.0f} bytes a write"
