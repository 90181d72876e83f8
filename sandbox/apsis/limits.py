"""Sliding-window rate limits: at most `limit` admitted requests in any `window` seconds.

A log of admission times per key (a deque of at most `limit` entries), so the rule is exact and
easy to reason about in tests: N at once pass, the N+1st is refused until the oldest ages out.
Refused requests are not logged, so a client hammering a full window does not extend it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable


class SlidingWindow:
    __slots__ = ("_logs", "_purge_at", "limit", "window")

    def __init__(self, limit: int | None, window: float = 1.0) -> None:
        self.limit = limit  # None or 0: unlimited
        self.window = window
        self._logs: dict[Hashable, deque[float]] = {}
        self._purge_at = 4096

    def hit(self, key: Hashable, now: float) -> float:
        """Admit (and record) a request: 0.0, or refuse it: seconds until one would be admitted."""
        limit = self.limit
        if not limit:
            return 0.0
        log = self._logs.get(key)
        if log is None:
            if len(self._logs) >= self._purge_at:
                self._purge(now)
            log = self._logs[key] = deque()
        horizon = now - self.window
        while log and log[0] <= horizon:
            log.popleft()
        if len(log) >= limit:
            return log[0] - horizon
        log.append(now)
        return 0.0

    def reset(self) -> None:
        self._logs.clear()

    def _purge(self, now: float) -> None:
        # Forget keys with nothing in the window, so millions of profile keys do not pile up.
        horizon = now - self.window
        self._logs = {k: log for k, log in self._logs.items() if log and log[-1] > horizon}
        self._purge_at = max(4096, 2 * len(self._logs))


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least 1 (Retry-After has no fractions)."""
    return str(max(1, math.ceil(wait)))
