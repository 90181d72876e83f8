"""Shopify's two throttles: the REST leaky bucket (requests) and the GraphQL cost bucket (points).

Both are plain objects read and changed on the event loop thread only, with the clock passed in,
so tests can drive them without sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RateLimitConfig:
    """REST throttle and 429 fault injection; change the fields at run time to reconfigure."""

    bucket_size: int = 40  # Advanced plan 80, Plus 400
    leak_rate: float = 2.0  # requests per second; Advanced 4, Plus 20
    retry_after_omit_rate: float = 0.0  # share of 429 answers without a Retry-After header
    fault_429_rate: float = 0.0  # share of requests answered 429 whatever the bucket says
    graphql_maximum: float = 1000.0
    graphql_restore_rate: float = 50.0


@dataclass
class LeakyBucket:
    """Each request adds one drop; drops leak at `rate` per second; a full bucket refuses."""

    size: int
    rate: float
    level: float = 0.0
    stamp: float = field(default=0.0)

    def _leak(self, now: float) -> None:
        if self.stamp:
            self.level = max(0.0, self.level - (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        self._leak(now)
        if self.level + 1 > self.size + 1e-9:
            return False
        self.level += 1
        return True

    def used(self, now: float) -> int:
        """What `X-Shopify-Shop-Api-Call-Limit` shows before the slash."""
        self._leak(now)
        return min(self.size, math.ceil(self.level - 1e-9))


@dataclass
class CostBucket:
    """GraphQL: a query costs points; points restore at `restore_rate` per second."""

    maximum: float
    restore_rate: float
    available: float = -1.0
    stamp: float = 0.0

    def refill(self, now: float) -> float:
        if self.available < 0:
            self.available = self.maximum
        elif self.stamp:
            self.available = min(self.maximum, self.available + (now - self.stamp) * self.restore_rate)
        self.stamp = now
        return self.available

    def spend(self, cost: float, now: float) -> bool:
        if self.refill(now) < cost:
            return False
        self.available -= cost
        return True
