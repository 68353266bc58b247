"""Metric names: the ones the dashboard and the alert rules use, and the ones the service and
the trainer export (from their registries or from a scraped /metrics page)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "veto-responsiveness.json"
RULES = ROOT / "veto" / "cli" / "rules.yml"
_NAME = re.compile(r"\bveto_[a-z0-9_]+\b")

# The contract between the processes and the monitoring files (notes/ops.md), by base name.
CONTRACT = {
    "veto_service_request_duration_seconds": "histogram",
    "veto_recommendations_served_total": "counter",
    "veto_recommendation_batch_size": "histogram",
    "veto_recommendation_queue_wait_seconds": "histogram",
    "veto_feedback_events_total": "counter",
    "veto_feedback_duplicates_total": "counter",
    "veto_feedback_rejected_total": "counter",
    "veto_disliked_item_served_total": "counter",
    "veto_withheld_item_served_total": "counter",
    "veto_model_version": "gauge",
    "veto_model_age_seconds": "gauge",
    "veto_feedback_to_model_lag_seconds": "histogram",
    "veto_model_swap_duration_seconds": "histogram",
    "veto_model_swap_failures_total": "counter",
    "veto_degraded_responses_total": "counter",
    "veto_responsiveness_similar_share_change": "histogram",
    "veto_trainer_round_duration_seconds": "histogram",
    "veto_trainer_examples_total": "counter",
    "veto_trainer_loss": "gauge",
    "veto_trainer_index_build_seconds": "histogram",
    "veto_trainer_pending_events": "gauge",
    "veto_trainer_published_version": "gauge",
    "veto_trainer_round_failures_total": "counter",
    "veto_trainer_last_round_timestamp_seconds": "gauge",
    "veto_trainer_skipped_events_total": "counter",
}


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of every panel."""
    dash = json.loads(path.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def rule_exprs(path: Path = RULES) -> list[str]:
    """Every PromQL expression of every alerting or recording rule."""
    doc = yaml.safe_load(path.read_text())
    return [str(rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def names_in(exprs: Iterable[str]) -> set[str]:
    """The ``veto_*`` series names the expressions read."""
    return {m for e in exprs for m in _NAME.findall(e)}


def series_names(name: str, kind: str) -> set[str]:
    """The series names a metric family of ``kind`` exposes (prometheus_client naming)."""
    base = name.removesuffix("_total") if kind == "counter" else name
    if kind == "counter":
        return {f"{base}_total"}
    if kind == "histogram":
        return {base, f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    if kind == "summary":
        return {base, f"{base}_sum", f"{base}_count"}
    return {base}


def contract_series() -> set[str]:
    """Every series name the contract promises."""
    return {s for name, kind in CONTRACT.items() for s in series_names(name, kind)}


def registry_series(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry exports, including families with no samples yet."""
    return {s for fam in registry.collect() for s in series_names(fam.name, fam.type)}


def exposition_series(text: str) -> set[str]:
    """Every series name a /metrics page declares (its ``# TYPE`` lines)."""
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            found |= series_names(name, kind.strip())
    return found


def _metrics_classes(module: Any) -> Iterator[type]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ == module.__name__ and "registry" in inspect.signature(obj).parameters:
            yield obj


def process_series(modules: Iterable[str]) -> tuple[set[str], list[str]]:
    """The series names exported by the metrics classes of ``modules`` (each built on its own
    registry), and the modules that are not there yet."""
    found: set[str] = set()
    missing = []
    for name in modules:
        if importlib.util.find_spec(name) is None:
            missing.append(name)
            continue
        module = importlib.import_module(name)
        for cls in _metrics_classes(module):
            registry = CollectorRegistry()
            cls(registry=registry)
            found |= registry_series(registry)
    return found, missing
