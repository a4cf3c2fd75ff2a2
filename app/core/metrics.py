"""Prometheus metrics shared by the API and the workers."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_COUNT = Counter(
    "hereabouts_http_requests_total",
    "HTTP requests by route template",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "hereabouts_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PING_GROUP_SIZE = Histogram(
    "hereabouts_ping_group_requests",
    "Ping requests evaluated and committed together (app/presence/groups.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
PING_EVAL_SET = Histogram(
    "hereabouts_ping_eval_set_fixes",
    "Queued fixes evaluated together in one set (app/presence/evaluator.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
PING_EVAL_DELAY = Histogram(
    "hereabouts_ping_eval_delay_seconds",
    "From a fix's 202 acknowledgment (its queue row) to its set's commit",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PING_EVAL_SLOT_WAITS = Counter(
    "hereabouts_ping_eval_slot_waits_total",
    "Evaluators whose wait for an evaluating slot ran out (a whole poll, or the extra slots' "
    "lag; every open one busy elsewhere): "
    "steadily rising, raise HEREABOUTS_PING_EVALUATOR_SLOTS if there are cores to spare",
)
PING_FAST_PATH = Counter(
    "hereabouts_ping_fast_path_requests_total",
    "POST /v1/pings requests answered 202 by the plain-ASGI path (app/presence/fastpath.py)",
)
TRANSACTION_RETRIES = Counter(
    "hereabouts_db_transaction_retries_total",
    "Transactions run again after a deadlock (40P01) or serialization failure (40001)",
    ["what", "sqlstate"],
)
