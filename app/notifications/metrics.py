"""Prometheus metrics for push delivery (exposed by `/metrics` of the API and the workers)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUSH_QUEUED = Gauge("hereabouts_push_queued", "Outbox rows waiting to be delivered (pending)")
PUSH_IN_FLIGHT = Gauge("hereabouts_push_in_flight", "Push requests currently being sent")
PUSH_OUTCOMES = Counter(
    "hereabouts_push_deliveries_total",
    "Delivery attempts by result: delivered, retried, gone, failed, dead",
    ["result"],
)
PUSH_LATENCY = Histogram(
    "hereabouts_push_latency_seconds",
    "Time from sending a push request to the push service's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
for _result in ("delivered", "retried", "gone", "failed", "dead"):
    PUSH_OUTCOMES.labels(_result)
