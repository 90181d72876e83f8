"""Prometheus metrics of the receiver, on a registry of its own (one per app instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from shopsync.jobs import TOPIC_JOBS


@dataclass
class ReceiverMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.webhooks = Counter(
            "shopsync_webhooks",
            "Webhook deliveries by topic and outcome",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shopsync_webhook_seconds",
            "Time from request start to answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
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

        self._children: dict[tuple[str, str], Any] = {}

    def count(self, topic: str | None, outcome: str) -> None:
        # Unknown topic names come from outside: bound the label's cardinality.
        label = topic if topic is not None and topic in TOPIC_JOBS else ("missing" if not topic else "other")
        child = self._children.get((label, outcome))
        if child is None:  # label lookup is slow-ish; this runs once per webhook
            child = self._children[(label, outcome)] = self.webhooks.labels(label, outcome)
        child.inc()
