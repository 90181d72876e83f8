"""Prometheus metrics of the API clients and the rate limiter (module level, default registry).

The worker's `/metrics` exposes the default registry. Labels are bounded: route templates, never
concrete paths; bucket kinds, never per-profile bucket names.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

API_REQUESTS = Counter(
    "shopsync_api_requests_total",
    "HTTP requests to the outside APIs by answer status ('error' when none arrived)",
    ["api", "method", "route", "status"],
)
API_LATENCY = Histogram(
    "shopsync_api_request_seconds",
    "Time from sending a request to its answer",
    ["api", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_RETRIES = Counter(
    "shopsync_api_retries_total",
    "Retries inside a call's budget, by reason (status or 'connection')",
    ["api", "reason"],
)
LIMITER_WAIT = Histogram(
    "shopsync_limiter_wait_seconds",
    "Time a request waited for its rate-limit slot",
    ["kind"],
    buckets=(0, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIMITER_FEEDBACK = Counter(
    "shopsync_limiter_feedback_total",
    "Times the API told us a bucket was fuller than ours and we slowed down",
    ["kind", "reason"],
)
TOKEN_REQUESTS = Counter(
    "shopsync_apsis_token_requests_total",
    "OAuth token requests made by this process, by outcome",
    ["outcome"],
)
