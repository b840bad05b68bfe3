"""Prometheus metrics of every stage, defined in one place (names are a public contract:
the Grafana dashboard and alerts are built on them)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_E2E = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_SIZES = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)

HTTP_REQUESTS = Counter(
    "notifsvc_http_requests_total",
    "Receiver HTTP requests by route and status",
    ["route", "status"],
)
HTTP_SECONDS = Histogram(
    "notifsvc_http_request_seconds", "Receiver request latency", ["route"], buckets=_LATENCY
)
PRODUCE_SECONDS = Histogram(
    "notifsvc_produce_seconds", "Time until the broker acknowledged a write", buckets=_LATENCY
)
BATCH_SIZE = Histogram(
    "notifsvc_batch_size", "Records per consumed batch", ["stage"], buckets=_SIZES
)
BATCH_SECONDS = Histogram(
    "notifsvc_batch_seconds",
    "Time to process one batch, commit included",
    ["stage"],
    buckets=_LATENCY,
)
BATCH_RETRIES = Counter(
    "notifsvc_batch_retries_total", "Batches retried after a database or broker failure", ["stage"]
)
PAUSED = Gauge(
    "notifsvc_consumer_paused", "1 while a stage is paused on a failing dependency", ["stage"]
)
DEDUPE_HITS = Counter("notifsvc_dedupe_hits_total", "Notifications the router saw more than once")
CONFLICTS = Counter(
    "notifsvc_payload_conflicts_total", "Re-posts of a UUID with a different payload (first kept)"
)
FORWARDED = Counter("notifsvc_forwarded_total", "Notifications forwarded to a channel", ["channel"])
FORWARD_SECONDS = Histogram(
    "notifsvc_forward_seconds", "Accepted to forwarded, per notification", buckets=_E2E
)
SENDS = Counter(
    "notifsvc_sends_total",
    "Delivery outcomes by channel (sent, failed, skipped)",
    ["channel", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "notifsvc_provider_seconds", "Latency of one provider call", ["channel"], buckets=_LATENCY
)
BREAKER_STATE = Gauge(
    "notifsvc_breaker_state",
    "Circuit breaker of each provider of a channel: 0 closed, 1 half-open, 2 open",
    ["channel", "provider"],
)
FAILOVERS = Counter(
    "notifsvc_failovers_total",
    "Sends passed on to the next provider because this one provably did not take them",
    ["channel", "provider"],
)
RETRIES = Counter("notifsvc_retries_total", "Provider calls retried", ["channel"])
DLQ = Counter("notifsvc_dlq_total", "Messages sent to the dead-letter topic", ["stage"])
END_TO_END = Histogram(
    "notifsvc_end_to_end_seconds",
    "Accepted by the receiver to sent by the provider",
    ["channel"],
    buckets=_E2E,
)
LAG = Gauge(
    "notifsvc_consumer_lag",
    "Messages behind the end of the partition",
    ["group", "topic", "partition"],
)
REDRIVEN = Counter(
    "notifsvc_redriven_total",
    "Unfinished notifications the reconciler forwarded again to their channel",
    ["channel"],
)
REQUEUED = Counter(
    "notifsvc_requeued_total",
    "Failed notifications an operator sent again, by how: retry (one) or replay (a job)",
    ["channel", "how"],
)
CANCELED = Counter(
    "notifsvc_canceled_total",
    "Notifications an operator canceled before anything was sent",
    ["channel"],
)
RETENTION_DELETED = Counter(
    "notifsvc_retention_deleted_total",
    "Finished notifications deleted (with their attempts) after NOTIFSVC_RETENTION_DAYS",
    ["state"],
)
REDRIVE_EXPIRED = Counter(
    "notifsvc_redrive_expired_total",
    "Unfinished notifications the reconciler failed as expired_unfinished (to the DLQ)",
    ["channel"],
)

CALLBACKS = Counter(
    "notifsvc_callbacks_total",
    "Status-callback events by outcome: delivered, retried (to the retry lane), failed (to "
    "the callbacks DLQ), gone (the receiver answered 410), dropped (its URL was gone)",
    ["outcome"],
)
CALLBACK_SECONDS = Histogram(
    "notifsvc_callback_seconds",
    "Latency of one status-callback request (until answered, timed out or refused)",
    buckets=_LATENCY,
)


def observe_all(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts``, with one increment per bucket hit
    and one of the sum: a stage observing each notification of a batch took a lock per
    bucket and per sum of each (10 % of a log notificator's CPU). ``histogram`` is one
    child (``.labels(...)``) or a histogram without labels; what a scrape shows is the same
    as after the single observations (unit/test_metrics.py compares them)."""
    bounds = histogram._upper_bounds  # prometheus_client has no batch observe
    hits = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        hits[bisect_left(bounds, amount)] += 1
        total += amount
    if not any(hits):
        return
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, hits, strict=True):
        if count:
            bucket.inc(count)


class Observations:
    """Observations of one histogram (a child, ``.labels(...)``, or one without labels)
    kept until :meth:`flush` adds them with :func:`observe_all`: for a stage that observes
    every notification of a batch, or every request of a loop iteration."""

    __slots__ = ("_amounts", "histogram")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._amounts: list[float] = []

    def observe(self, amount: float) -> None:
        self._amounts.append(amount)

    def flush(self) -> None:
        amounts, self._amounts = self._amounts, []
        observe_all(self.histogram, amounts)


def serve(port: int) -> None:
    """Expose ``/metrics`` on ``port`` from a background thread (0 disables it)."""
    if port:
        start_http_server(port)
