"""Prometheus metrics, one definition each, shared by the API and the engine (served on the management port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter("assay_http_requests_total", "HTTP requests answered", ["app", "path", "status"])
HTTP_DURATION = Histogram(
    "assay_http_request_duration_seconds", "Time from request to response", ["app", "path"], buckets=_TIME_BUCKETS
)
QUEUE_TIME = Histogram(
    "assay_queue_time_seconds", "Time an input waited in its group's queue", ["consumer_group"],
    buckets=_TIME_BUCKETS,
)
QUEUE_DEPTH = Gauge("assay_queue_depth", "Inputs waiting in a group's queue", ["consumer_group"])
USER_BATCH_SIZE = Histogram(
    "assay_user_batch_size", "Inputs per request", ["consumer_group"], buckets=_SIZE_BUCKETS
)
MODEL_BATCH_SIZE = Histogram(
    "assay_model_batch_size", "Sequences per forward pass", ["consumer_group"], buckets=_SIZE_BUCKETS
)
BATCH_TOKENS = Histogram(
    "assay_batch_tokens", "Padded tokens per forward pass", ["consumer_group"], buckets=_TOKEN_BUCKETS
)
READER_BATCHES = Counter("assay_reader_batches_total", "Batches run by a reader", ["consumer_group", "reader_id"])
READER_FORWARD_SECONDS = Counter(
    "assay_reader_forward_seconds_total", "Time a reader spent in forward passes", ["consumer_group", "reader_id"]
)
READER_FAILED_BATCHES = Counter(
    "assay_reader_failed_batches_total", "Batches whose forward or decode raised", ["consumer_group", "reader_id"]
)
TRUNCATED_INPUTS = Counter(
    "assay_truncated_inputs_total", "Inputs cut to the reader's maximum sequence length", ["consumer_group"]
)
