"""/metrics: every name of the monitoring contract, bounded labels, counters that move with
the API, and the online counterfactual responsiveness measured off the request path."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import ServiceMetrics
from service.model_holder import build_serving_model
from service.responsiveness import similar_share_change
from tests.service.svc_helpers import Serve, event, items_in
from trainer.data.synthetic import SyntheticWorld
from veto.artifacts import load_version
from veto.events import EventType, HistoryEntry

pytestmark = pytest.mark.anyio

SERVICE_METRICS = {
    "veto_service_request_duration_seconds": "histogram",
    "veto_recommendations_served": "counter",
    "veto_recommendation_batch_size": "histogram",
    "veto_recommendation_queue_wait_seconds": "histogram",
    "veto_feedback_events": "counter",
    "veto_feedback_duplicates": "counter",
    "veto_feedback_rejected": "counter",
    "veto_disliked_item_served": "counter",
    "veto_withheld_item_served": "counter",
    "veto_model_version": "gauge",
    "veto_model_age_seconds": "gauge",
    "veto_feedback_to_model_lag_seconds": "histogram",
    "veto_model_swap_duration_seconds": "histogram",
    "veto_model_swap_failures": "counter",
    "veto_degraded_responses": "counter",
    "veto_responsiveness_similar_share_change": "histogram",
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_metrics_live_on_the_injected_registry() -> None:
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    kinds = {fam.name: fam.type for fam in registry.collect()}
    assert kinds == SERVICE_METRICS
    ServiceMetrics(CollectorRegistry())  # a second app in one process does not clash


def test_share_change_histogram_buckets_cover_minus_one_to_one() -> None:
    registry = CollectorRegistry()
    ServiceMetrics(registry).responsiveness.observe(-1.0)
    bounds = [
        float(s.labels["le"])
        for fam in registry.collect()
        for s in fam.samples
        if s.name == "veto_responsiveness_similar_share_change_bucket"
    ]
    assert min(bounds) <= -1.0 and 0.0 in bounds and 1.0 in bounds and math.inf in bounds


async def test_counters_move_with_the_api_and_labels_are_route_templates(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    batch = {"events": [event("mo", "i1", "like", event_id="a"), event("mo", "i2", "skip")]}
    async with serve() as (_, client):
        await client.post("/v1/feedback", json=batch)
        await client.post(
            "/v1/feedback", json={"events": [event("mo", "i1", "like", event_id="a")]}
        )
        await client.post("/v1/feedback", json={"events": [event("mo", "ghost", "like")]})
        await client.get("/v1/users/mo/recommendations?k=3")
        await client.get("/v1/users/someone-else/recommendations?k=3")
        await client.get("/v1/users/mo/recommendations?k=0")
        text = (await client.get("/metrics")).text
    got = _samples(text)
    assert got[("veto_feedback_events_total", (("type", "like"),))] == 1
    assert got[("veto_feedback_events_total", (("type", "skip"),))] == 1
    assert got[("veto_feedback_events_total", (("type", "dislike"),))] == 0
    assert got[("veto_feedback_duplicates_total", ())] == 1
    assert got[("veto_feedback_rejected_total", ())] == 1
    assert got[("veto_recommendations_served_total", ())] == 2
    assert got[("veto_model_version", ())] == 1
    route = "/v1/users/{user_id}/recommendations"
    ok = (("method", "GET"), ("route", route), ("status", "200"))
    bad = (("method", "GET"), ("route", route), ("status", "422"))
    assert got[("veto_service_request_duration_seconds_count", ok)] == 2
    assert got[("veto_service_request_duration_seconds_count", bad)] == 1
    assert "mo" not in {v for (_, labels) in got for _, v in labels}
    assert "someone-else" not in text


async def test_a_refused_batch_counts_its_bad_events_once_whoever_refused_it(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    schema = [event("ok", "i1", "like"), event("u", "i1", "love"), event("u 1", "i1", "like")]
    catalog = [event("ghost-fan", "ghost", "like"), event("ok", "i1", "like")]
    async with serve(max_batch=3) as (_, client):
        refused = [
            await client.post("/v1/feedback", json={"events": schema}),  # 2 bad events
            await client.post("/v1/feedback", json={"events": catalog}),  # 1
            await client.post(
                "/v1/feedback", json={"events": [event(f"u{n}", "i1", "like") for n in range(4)]}
            ),  # the whole batch of 4, above max_batch
            await client.post(
                "/v1/feedback", content=b"not json", headers={"content-type": "application/json"}
            ),  # 1: the body
        ]
        text = (await client.get("/metrics")).text
    assert [r.status_code for r in refused] == [422, 422, 413, 422]
    assert _samples(text)[("veto_feedback_rejected_total", ())] == 2 + 1 + 4 + 1


async def _scrape_once_counted(
    client: httpx.AsyncClient, name: str, *, timeout: float = 10.0
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics once ``name`` has an observation: the probe measures off the request path."""
    deadline = time.monotonic() + timeout
    while True:
        got = _samples((await client.get("/metrics")).text)
        if got[(f"{name}_count", ())] > 0:
            return got
        assert time.monotonic() < deadline, f"{name} observed nothing in {timeout} s"
        await asyncio.sleep(0.02)


async def test_a_sampled_dislike_observes_a_negative_similar_share_change(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    likes = items_in(world, "c1", 2) + items_in(world, "c2", 2)
    disliked = items_in(world, "c2", 3)[2]
    name = "veto_responsiveness_similar_share_change"
    async with serve(responsiveness_sample_rate=1.0, responsiveness_k=20) as (_, client):
        await client.post(
            "/v1/feedback", json={"events": [event("rita", i, "like") for i in likes]}
        )
        resp = await client.post(
            "/v1/feedback", json={"events": [event("rita", disliked, "dislike")]}
        )
        # Samples are measured in order: had a like been sampled, it would be counted too.
        after = await _scrape_once_counted(client, name)
    assert resp.status_code == 200
    assert after[(f"{name}_count", ())] == 1  # the dislike only: likes are not sampled
    assert -1.0 <= after[(f"{name}_sum", ())] < 0.0


async def test_the_probe_reads_the_catalogs_categories(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    # The set-up of the test above, whose dislike moves the share (< 0) by the version's
    # categories; the catalog puts every item in one category, where no share can move.
    publish_version(1)
    likes = items_in(world, "c1", 2) + items_in(world, "c2", 2)
    disliked = items_in(world, "c2", 3)[2]
    name = "veto_responsiveness_similar_share_change"
    one = [{"item_id": i, "category": "all"} for i in world.item_ids]
    async with serve(responsiveness_sample_rate=1.0, responsiveness_k=20) as (app, client):
        assert (await client.post("/v1/items:batch", json={"items": one})).is_success
        # A request lets this replica's catalog copy catch up, as any request after a write.
        assert (await client.get("/v1/users/rita/recommendations?k=5")).status_code == 200
        await client.post(
            "/v1/feedback", json={"events": [event("rita", i, "like") for i in likes]}
        )
        await client.post("/v1/feedback", json={"events": [event("rita", disliked, "dislike")]})
        await asyncio.wait_for(app.state.services.probe.drained(), timeout=10)
        after = _samples((await client.get("/metrics")).text)
    assert after[(f"{name}_count", ())] == 1
    assert after[(f"{name}_sum", ())] == 0.0


def test_share_change_is_none_without_similar_items_to_lose(
    publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    model = build_serving_model(load_version(publish_version(1)))
    liked = [HistoryEntry(i, EventType.LIKE, 1.0) for i in items_in(world, "c1", 3)]
    far = HistoryEntry(items_in(world, "c6", 1)[0], EventType.DISLIKE, 2.0)
    near = HistoryEntry(items_in(world, "c1", 4)[3], EventType.DISLIKE, 2.0)
    stored = [e.encode() for e in liked]  # as Redis keeps a history
    # Top-k of a c1 lover holds no c6 item: no share to change.
    assert similar_share_change(model, user_id="x", history=stored, disliked=far, k=5) is None
    change = similar_share_change(
        model, user_id="x", history=[near.encode(), *stored], disliked=near, k=50
    )
    assert change is not None and -1.0 <= change <= 0.0
