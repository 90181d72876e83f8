"""Prometheus metrics of the receiver, on a registry of its own (one per app instance).

The two that every webhook touches (deliveries by topic and outcome, answer latency) are plain
counters read by a collector at scrape time: the receiver is single-threaded, so they need none
of prometheus_client's locks, which are a measurable share of a webhook's cost.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.jobs import TOPIC_JOBS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _HotPath(Collector):
    def __init__(self) -> None:
        self.webhooks: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.latency_sum = 0.0

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "shopsync_webhooks", "Webhook deliveries by topic and outcome", labels=["topic", "outcome"]
        )
        for (topic, outcome), value in sorted(self.webhooks.items()):
            deliveries.add_metric([topic, outcome], value)
        yield deliveries
        cumulative, running = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "shopsync_webhook_seconds",
            "Time from request start to answer",
            buckets=cumulative,
            sum_value=self.latency_sum,
        )


@dataclass
class ReceiverMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._hot = _HotPath()
        self.registry.register(self._hot)
        self.enqueue_failures = Counter(
            "shopsync_enqueue_failures",
            "Deliveries answered 503 because Redis could not take the job",
            registry=self.registry,
        )
        self.admin_requests = Counter(
            "shopsync_admin_requests",
            "Admin API requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.scrape_failures = Counter(
            "shopsync_metrics_scrape_failures",
            "Scrapes answered without the workers' metrics because Redis did not answer",
            registry=self.registry,
        )

    def count(self, topic: str | None, outcome: str) -> None:
        # Unknown topic names come from outside: bound the label's cardinality.
        label = topic if topic is not None and topic in TOPIC_JOBS else ("missing" if not topic else "other")
        self._hot.webhooks[(label, outcome)] += 1

    def observe_latency(self, seconds: float) -> None:
        self._hot.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._hot.latency_sum += seconds
