"""Prometheus metrics per webhook endpoint (on `/metrics` of the API and the workers)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOK_ATTEMPTS = Counter(
    "hereabouts_webhook_deliveries_total",
    "Webhook delivery attempts per endpoint by result: delivered, retried, dead",
    ["endpoint", "result"],
)
WEBHOOK_LATENCY = Histogram(
    "hereabouts_webhook_latency_seconds",
    "Time from sending a webhook to the receiver's answer, per endpoint",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOK_IN_FLIGHT = Gauge("hereabouts_webhook_in_flight", "Webhook requests being sent")
WEBHOOK_QUEUED = Gauge("hereabouts_webhook_queued", "Webhook messages waiting (pending)")
