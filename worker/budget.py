"""A job's time budget, seen by the waits inside it.

`worker.runtime.run_job` gives every job a budget and cancels it when the budget is spent; a job
cancelled in the middle of a request leaves its outcome unknown (an order's events are then
reported uncertain and never resent). So the waits that can be long (a rate-limit slot, a retry's
backoff) are cut to what the budget has left: rather than wait past it, they raise their usual
"try again later" error, the job ends with a Retry, and the queue holds the wait. `RESERVE_S` is
kept back for the request after the wait and for the job's own bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

RESERVE_S = 3.0
_deadline: ContextVar[float | None] = ContextVar("job_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """The code inside (and the tasks it starts) has `seconds` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left for the current job, or None outside any job."""
    end = _deadline.get()
    return None if end is None else end - time.monotonic()


def cap_wait(limit_s: float) -> float:
    """The longest wait allowed now: `limit_s`, or less when the job's budget ends sooner."""
    left = remaining()
    if left is None:
        return limit_s
    return max(0.0, min(limit_s, left - RESERVE_S))
