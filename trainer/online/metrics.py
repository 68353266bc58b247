"""The trainer's Prometheus metrics, on an injectable registry (its own /metrics port).

veto_trainer_round_duration_seconds        histogram  one fine-tuning round, read to ack
veto_trainer_examples_total                counter    training examples (new + replay)
veto_trainer_loss{component}               gauge      last round: total | softmax | ntr
veto_trainer_index_build_seconds           histogram  writing a version: index + files
veto_trainer_index_recall                  gauge      IVF recall@10 vs exact, sampled items
veto_trainer_index_retrains_total          counter    IVF indexes trained anew (recall fell)
veto_trainer_pending_events                gauge      events not yet trained on (lag + PEL)
veto_trainer_published_version             gauge      the last version this trainer published
veto_trainer_round_failures_total          counter    rounds that raised (events stay pending)
veto_trainer_last_round_timestamp_seconds  gauge      end of the last successful round
veto_trainer_skipped_events_total{reason}  counter    unknown_item | malformed | erased |
                                                       withdrawn
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_ROUND_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_INDEX_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class TrainerMetrics:
    """All trainer metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.round_duration = Histogram(
            "veto_trainer_round_duration_seconds",
            "Duration of one fine-tuning round, from reading events to acking them.",
            buckets=_ROUND_BUCKETS,
            registry=registry,
        )
        self.examples = Counter(
            "veto_trainer_examples_total",
            "Training examples used by fine-tuning rounds (new events plus replay).",
            registry=registry,
        )
        self.loss = Gauge(
            "veto_trainer_loss",
            "Mean loss of the last round's last epoch, by component.",
            ["component"],
            registry=registry,
        )
        self.index_build = Histogram(
            "veto_trainer_index_build_seconds",
            "Time to write a model version: FAISS index build, files, checksums, rename.",
            buckets=_INDEX_BUCKETS,
            registry=registry,
        )
        self.index_recall = Gauge(
            "veto_trainer_index_recall",
            "Recall@10 of the published IVF index against exact search, on sampled items.",
            registry=registry,
        )
        self.index_retrains = Counter(
            "veto_trainer_index_retrains",
            "IVF indexes trained anew because their sampled recall fell (ivf_min_recall_ratio).",
            registry=registry,
        )
        self.pending = Gauge(
            "veto_trainer_pending_events",
            "Feedback events not yet trained on: undelivered plus delivered but not acked.",
            registry=registry,
        )
        self.published_version = Gauge(
            "veto_trainer_published_version",
            "The model version this trainer published last.",
            registry=registry,
        )
        self.failures = Counter(
            "veto_trainer_round_failures_total",
            "Rounds that failed; their events stay pending and are retried.",
            registry=registry,
        )
        self.last_round = Gauge(
            "veto_trainer_last_round_timestamp_seconds",
            "Unix time the last successful round ended (alert when it stops moving).",
            registry=registry,
        )
        self.skipped = Counter(
            "veto_trainer_skipped_events_total",
            "Events acked without training on them, by reason.",
            ["reason"],
            registry=registry,
        )
        for component in ("total", "softmax", "ntr"):
            self.loss.labels(component=component)
        for reason in ("unknown_item", "malformed"):
            self.skipped.labels(reason=reason)


def serve_metrics(metrics: TrainerMetrics, port: int) -> None:
    """Expose ``metrics`` on http://0.0.0.0:port/metrics from a daemon thread."""
    start_http_server(port, registry=metrics.registry)
