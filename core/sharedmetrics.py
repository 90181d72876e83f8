"""Metrics that every worker process adds to, kept in Redis, exposed by the receiver's /metrics.

Worker dynos have no port to scrape, so each worker accumulates counters and histogram buckets
in memory and flushes them every few seconds with one pipelined `HINCRBYFLOAT` round trip into a
single hash. The receiver renders that hash in the Prometheus text format, together with gauges
it reads from Redis at scrape time (queue depth, full-sync progress). Counters are monotonic and
summed over all processes, which is exactly what Prometheus expects of a counter.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HELP: Mapping[str, tuple[str, str]] = {
    "shopsync_jobs_total": ("counter", "Jobs finished, by function and outcome"),
    "shopsync_job_seconds": ("histogram", "Job run time, by function"),
    "shopsync_api_requests_total": ("counter", "Outside API requests by api, route and status"),
    "shopsync_limiter_wait_seconds_total": ("counter", "Time spent waiting for rate-limit tokens, by bucket"),
    "shopsync_webhook_to_write_seconds": ("histogram", "From webhook receipt to the APSIS write"),
    "shopsync_customers_total": ("counter", "Customers processed, by source and outcome"),
    "shopsync_fullsync_yields_total": (
        "counter",
        "Full-sync customers held back because webhook jobs started late (worker/realtime_lag.py)",
    ),
    "shopsync_fullsync_walk_rests_total": (
        "counter",
        "Import walk pages after which the walk rested for webhooks served beside it (worker/realtime_lag.py)",
    ),
    "shopsync_apply_jobs_total": ("counter", "Deferred apply-customer jobs finished, by how they ended"),
    "shopsync_coalesced_applies_total": ("counter", "Applies by apply-customer jobs (backlogs merged)"),
    "shopsync_coalesced_updates_total": (
        "counter",
        "Queued updates applied by apply-customer jobs, by outcome",
    ),
    "shopsync_api_retries_total": (
        "counter",
        "Outside API retries inside a call's budget, by api and reason",
    ),
    "shopsync_limiter_feedback_total": ("counter", "Times an API said a bucket was fuller than ours"),
    "shopsync_apsis_token_requests_total": ("counter", "APSIS OAuth token requests, by outcome"),
    "shopsync_apsis_consents_total": (
        "counter",
        "Consent 2.0 writes by type and outcome (created, updated, unchanged; kept out: an APSIS opt-out is newer)",
    ),
    # `shop` label: only shops of the installations file (jobs of others are parked unrun).
    "shopsync_shop_jobs_total": ("counter", "Jobs finished, by shop and outcome"),
    "shopsync_shop_api_requests_total": (
        "counter",
        "Outside API answers inside a shop's jobs, by shop, api and outcome",
    ),
    "shopsync_suppressed_seen_total": (
        "counter",
        "Syncs that found a profile address suppressed in APSIS, by shop",
    ),
}


def _series(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class SharedMetrics:
    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._pending: defaultdict[str, float] = defaultdict(float)

    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None:
        self._pending[_series(name, labels or {})] += value

    def observe(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        labels = dict(labels or {})
        # Stored per bucket (only the first that fits); `render` makes them cumulative.
        bound = next((b for b in buckets if value <= b), math.inf)
        le = "+Inf" if bound == math.inf else repr(bound)
        self._pending[_series(f"{name}_bucket", {**labels, "le": le})] += 1
        self._pending[_series(f"{name}_sum", labels)] += value
        self._pending[_series(f"{name}_count", labels)] += 1

    def job_finished(self, function: str, outcome: str, seconds: float) -> None:
        self.inc("shopsync_jobs_total", {"function": function, "outcome": outcome})
        self.observe("shopsync_job_seconds", seconds, {"function": function})

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(float)
        pipe = self._redis.pipeline(transaction=False)
        for series, value in pending.items():
            pipe.hincrbyfloat(self._key, series, value)
        try:
            await pipe.execute()
        except Exception:
            # Keep the numbers for the next flush rather than lose them.
            for series, value in pending.items():
                self._pending[series] += value
            raise


def render(stored: Mapping[bytes, bytes]) -> str:
    """The stored series as Prometheus text, histogram buckets cumulated per label set."""
    by_family: defaultdict[str, list[tuple[str, float]]] = defaultdict(list)
    for raw_series, raw_value in stored.items():
        series = raw_series.decode()
        name = series.split("{", 1)[0]
        family = next((f for f in HELP if name == f or name.startswith(f + "_")), name)
        by_family[family].append((series, float(raw_value)))
    lines: list[str] = []
    for family in sorted(by_family):
        kind, text = HELP.get(family, ("untyped", family))
        lines.append(f"# HELP {family} {text}")
        lines.append(f"# TYPE {family} {kind}")
        rows = by_family[family]
        if kind == "histogram":
            rows = _cumulate(rows)
        for series, value in sorted(rows):
            lines.append(f"{series} {value:g}" if value != int(value) else f"{series} {int(value)}")
    return "\n".join(lines) + "\n"


def _cumulate(rows: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Stored buckets count observations per bucket; Prometheus wants `le` buckets cumulative."""
    out: list[tuple[str, float]] = []
    groups: defaultdict[str, list[tuple[float, str, float]]] = defaultdict(list)
    for series, value in rows:
        if "_bucket{" not in series:
            out.append((series, value))
            continue
        head, labels = series.split("{", 1)
        parts = labels.rstrip("}").split(",")
        le = next(p for p in parts if p.startswith("le="))
        rest = ",".join(p for p in parts if not p.startswith("le="))
        bound = math.inf if "+Inf" in le else float(le[4:-1])
        groups[f"{head}{{{rest}"].append((bound, series, value))
    for entries in groups.values():
        total = 0.0
        for _, series, value in sorted(entries):
            total += value
            out.append((series, total))
    return out
