"""The service's Prometheus metrics, in one place, on an injectable registry.

Labels are bounded: a route template, a method, a status code, an event type. Never a user
or item id.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.signed_histogram import SignedHistogram
from veto.events import EventType

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_QUEUE_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_SWAP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Relative change of the similar share: -1 (all similar items gone) .. +1, and above.
_SHARE_CHANGE_BUCKETS = (
    -1.0,
    -0.8,
    -0.6,
    -0.4,
    -0.2,
    -0.1,
    -0.05,
    0.0,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    2.0,
    5.0,
)


class ServiceMetrics:
    """Every metric the service exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "veto_service_request_duration_seconds",
            "HTTP request duration by route template, method and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.recommendations_served = Counter(
            "veto_recommendations_served_total",
            "Recommendation responses served (including fallbacks and degraded ones)",
            registry=r,
        )
        self.feedback_events = Counter(
            "veto_feedback_events_total",
            "Feedback events accepted (new, not duplicates) by type",
            ["type"],
            registry=r,
        )
        for t in EventType:
            self.feedback_events.labels(type=t.label)
        self.feedback_duplicates = Counter(
            "veto_feedback_duplicates_total",
            "Feedback events skipped because their event id was already seen",
            registry=r,
        )
        self.feedback_rejected = Counter(
            "veto_feedback_rejected_total",
            "Feedback events in batches rejected as invalid",
            registry=r,
        )
        self.recommendation_batch_size = Histogram(
            "veto_recommendation_batch_size",
            "Recommendation requests served together in one batch (one Redis round trip, one "
            "encode, one index search)",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.recommendation_queue_wait = Histogram(
            "veto_recommendation_queue_wait_seconds",
            "Time a recommendation request waited for its batch to start",
            buckets=_QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.disliked_item_served = Counter(
            "veto_disliked_item_served_total",
            "Items returned to a user who disliked them (must stay 0)",
            registry=r,
        )
        self.withheld_item_served = Counter(
            "veto_withheld_item_served_total",
            "Items returned although the catalog hides or deleted them (must stay 0)",
            registry=r,
        )
        self.model_version = Gauge(
            "veto_model_version", "The model version this replica serves", registry=r
        )
        self.model_age = Gauge(
            "veto_model_age_seconds",
            "Seconds since the served model version was created",
            registry=r,
        )
        self.feedback_to_model_lag = Histogram(
            "veto_feedback_to_model_lag_seconds",
            "At a swap: now minus the ingest time of the newest event the version was trained on",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.model_swap_duration = Histogram(
            "veto_model_swap_duration_seconds",
            "Time to load, validate and swap in a model version",
            buckets=_SWAP_BUCKETS,
            registry=r,
        )
        self.model_swap_failures = Counter(
            "veto_model_swap_failures_total",
            "Model versions refused (invalid or unloadable); the old one kept serving",
            registry=r,
        )
        self.degraded_responses = Counter(
            "veto_degraded_responses_total",
            "Recommendation responses computed without the user's history (Redis unreachable)",
            registry=r,
        )
        self.responsiveness = SignedHistogram(
            "veto_responsiveness_similar_share_change",
            "On a sampled dislike: relative change of the share of same-category items in the "
            "top-K, with the dislike vs without it (same history, same model)",
            buckets=_SHARE_CHANGE_BUCKETS,
            registry=r,
        )

    def observe_batch(self, size: int, waits: list[float]) -> None:
        """One recommendation batch of ``size`` requests that waited ``waits`` seconds."""
        self.recommendation_batch_size.observe(size)
        for wait in waits:
            self.recommendation_queue_wait.observe(wait)

    def track_model_age(self, created_at: Callable[[], float | None]) -> None:
        """Compute the model age at scrape time from the served version's creation time."""

        def age() -> float:
            created = created_at()
            return 0.0 if created is None else max(0.0, time.time() - created)

        self.model_age.set_function(age)
