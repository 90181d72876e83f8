"""The write log: every accepted write, in the order the account applied them.

Kept as GC-untracked plain tuples (seq, kind, path parameter values, summary as JSON bytes, time)
in a bounded deque; `WriteRecord`s are made on reading.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, NamedTuple

import orjson

from sandbox.apsis.values import iso, kept_json

# Path parameter names of each kind of write, in the order `log` gets their values.
PARAM_NAMES = {
    "attributes": ("keyspace", "profile_key", "section"),
    "events": ("keyspace", "profile_key", "section"),
    "consent": ("keyspace", "profile_key", "section"),
    "delete": ("keyspace", "profile_key"),
}

_Entry = tuple[int, str, tuple[str, ...], bytes, float]


class WriteRecord(NamedTuple):
    """One accepted write, in the order the account applied them."""

    seq: int
    kind: str  # attributes | events | consent | delete
    params: dict[str, str]  # path parameters (keyspace, profile_key[, section])
    summary: dict[str, Any]  # the body, or a summary of it
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "params": self.params,
            "summary": self.summary,
            "at": iso(self.at),
        }


class WriteLogMixin:
    """The write log part of `Account`."""

    _writes: deque[_Entry]
    _write_seq: int

    def _init_write_log(self, max_write_log: int | None) -> None:
        self._writes = deque(maxlen=max_write_log)
        self._write_seq = 0

    def _reset_write_log(self) -> None:
        self._writes.clear()
        self._write_seq = 0

    def _log(self, kind: str, params: tuple[str, ...], summary: dict[str, Any], now: float) -> None:
        self._write_seq += 1
        self._writes.append((self._write_seq, kind, params, kept_json(summary), now))

    @property
    def writes(self) -> list[WriteRecord]:
        """The write log, oldest first (the last `max_write_log` writes)."""
        return [_record(w) for w in self._writes]

    def writes_after(self, seq: int, limit: int | None = None) -> list[WriteRecord]:
        """Writes with a sequence number above `seq` (for polling), oldest first, at most `limit`."""
        log = self._writes
        if not log:
            return []
        # Sequence numbers are consecutive, so the position of `seq + 1` is known.
        start = max(0, seq + 1 - log[0][0])
        stop = len(log) if limit is None else min(len(log), start + limit)
        if start >= stop:
            return []
        if start > len(log) // 2:  # near the end: walk from there
            tail = [log[-i] for i in range(1, len(log) - start + 1)]
            tail.reverse()
            return [_record(w) for w in tail[: stop - start]]
        return [_record(w) for w in itertools.islice(log, start, stop)]

    def writes_of(self, kind: str | None = None) -> list[WriteRecord]:
        return [_record(w) for w in self._writes if kind is None or w[1] == kind]


def _record(w: _Entry) -> WriteRecord:
    seq, kind, params, summary, at = w
    return WriteRecord(
        seq, kind, dict(zip(PARAM_NAMES[kind], params, strict=True)), orjson.loads(summary), at
    )
