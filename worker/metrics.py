"""Prometheus metrics of the API clients and the rate limiter (module level, default registry).

The worker's `/metrics` exposes the default registry. Labels are bounded: route templates, never
concrete paths; bucket kinds, never per-profile bucket names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Protocol

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


# --- hooks ------------------------------------------------------------------------------------
#
# The clients report through these functions. They feed the prometheus_client objects above and
# every registered sink: anything with `inc(name, labels, value)`, such as the worker's
# `core.sharedmetrics.SharedMetrics`, which sums all processes in Redis for the receiver's
# /metrics (worker processes have no port to scrape): `worker.metrics.add_sink(ctx.metrics)`.


class Sink(Protocol):
    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None: ...


_sinks: list[Sink] = []


def add_sink(sink: Sink) -> None:
    if sink not in _sinks:
        _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def _to_sinks(name: str, labels: Mapping[str, str], value: float = 1.0) -> None:
    for sink in _sinks:
        with contextlib.suppress(Exception):  # metrics must never break a request
            sink.inc(name, labels, value)


def request_done(api: str, method: str, route: str, status: str, seconds: float | None) -> None:
    API_REQUESTS.labels(api, method, route, status).inc()
    if seconds is not None:
        API_LATENCY.labels(api, route).observe(seconds)
    _to_sinks("shopsync_api_requests_total", {"api": api, "method": method, "route": route, "status": status})


def limiter_waited(kind: str, seconds: float) -> None:
    LIMITER_WAIT.labels(kind).observe(seconds)
    if seconds > 0:
        _to_sinks("shopsync_limiter_wait_seconds_total", {"bucket": kind}, seconds)


def retried(api: str, reason: str) -> None:
    API_RETRIES.labels(api, reason).inc()
    _to_sinks("shopsync_api_retries_total", {"api": api, "reason": reason})


def fed_back(kind: str, reason: str) -> None:
    LIMITER_FEEDBACK.labels(kind, reason).inc()
    _to_sinks("shopsync_limiter_feedback_total", {"kind": kind, "reason": reason})


def token_requested(outcome: str) -> None:
    TOKEN_REQUESTS.labels(outcome).inc()
    _to_sinks("shopsync_apsis_token_requests_total", {"outcome": outcome})
