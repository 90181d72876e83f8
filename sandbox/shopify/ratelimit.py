"""Shopify's GraphQL throttle, the cost bucket (points), and the fault switches of the Admin API.

(The REST Admin API's leaky bucket went with the REST routes: the sandbox serves GraphQL only.)
The buckets are plain objects read and changed on the event loop thread only, with the clock passed in,
so tests can drive them without sleeping. GraphQL limits are per app and store: `CostBuckets`
keeps one bucket per app (the access token it calls with). Its restore rate follows the store's
plan (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits: Standard 100 points/s,
Advanced 200, Plus 1,000, Enterprise 2,000); the bucket holds 20 seconds of restore (2,000 points
on Standard, as in Shopify's example throttle status). `graphql_maximum` / `graphql_restore_rate`
override both when set (non-zero). A single query may not cost more than 1,000 points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PLAN_RESTORE_RATES = {"standard": 100.0, "advanced": 200.0, "plus": 1000.0, "enterprise": 2000.0}
BUCKET_SECONDS = 20.0
SINGLE_QUERY_MAX_COST = 1000


@dataclass
class RateLimitConfig:
    """GraphQL limits and fault injection; change the fields at run time to reconfigure."""

    retry_after_omit_rate: float = 0.0  # share of injected 429 answers without a Retry-After header
    fault_429_rate: float = 0.0  # share of GraphQL requests answered 429 whatever the bucket says
    plan: str = "standard"  # standard | advanced | plus | enterprise: the GraphQL restore rate
    graphql_maximum: float = 0.0  # 0: from the plan
    graphql_restore_rate: float = 0.0  # 0: from the plan
    fault_5xx_rate: float = 0.0  # share of GraphQL requests answered 503
    latency_s: float = 0.0  # added before every GraphQL answer

    def graphql_limits(self) -> tuple[float, float]:
        """(maximumAvailable, restoreRate) of the GraphQL cost bucket."""
        restore = self.graphql_restore_rate or PLAN_RESTORE_RATES.get(
            self.plan, PLAN_RESTORE_RATES["standard"]
        )
        return (self.graphql_maximum or restore * BUCKET_SECONDS), restore


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

    def refund(self, points: float) -> None:
        """Give back what a query asked for but did not use (requested - actual cost)."""
        self.available = min(self.maximum, self.available + max(0.0, points))


@dataclass
class CostBuckets:
    """One GraphQL cost bucket per app (keyed by its access token) on this store."""

    buckets: dict[str, CostBucket] = field(default_factory=dict)

    def for_app(self, app: str, config: RateLimitConfig) -> CostBucket:
        maximum, restore = config.graphql_limits()
        bucket = self.buckets.get(app)
        if bucket is None:
            bucket = self.buckets[app] = CostBucket(maximum, restore)
        bucket.maximum, bucket.restore_rate = maximum, restore  # plan changes apply at once
        return bucket
