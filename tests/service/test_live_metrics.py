"""The console's live window (``GET /v1/admin/live``): histogram quantiles as Prometheus
interpolates them, rates per interval from consecutive snapshots, and the endpoint over the
real app's own metrics (the console's polling is not counted as API traffic)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from service.live_metrics import Snapshot, bucket_quantile, live_points
from service.routes import RECOMMENDATIONS_PATH
from tests.service.svc_helpers import Serve, event, items_in, recommended, redis_state
from trainer.data.synthetic import SyntheticWorld

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_it_falls_in() -> None:
    buckets = ((0.01, 0.0), (0.1, 10.0), (1.0, 10.0), (INF, 10.0))
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.055)
    assert bucket_quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 0.99)


def test_quantile_in_the_first_bucket_starts_from_zero_and_in_inf_is_the_last_bound() -> None:
    assert bucket_quantile(0.5, ((0.01, 4.0), (INF, 4.0))) == pytest.approx(0.005)
    assert bucket_quantile(0.99, ((0.01, 1.0), (1.0, 1.0), (INF, 100.0))) == 1.0


def test_quantile_without_observations_is_none() -> None:
    assert bucket_quantile(0.5, ()) is None
    assert bucket_quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None


def _snap(at: float, *, recs: float, admin: float, resp: tuple[float, float] = (0, 0)) -> Snapshot:
    return Snapshot(
        at=at,
        requests={RECOMMENDATIONS_PATH: recs, "/v1/admin/live": admin, "/metrics": admin},
        latency=((0.01, recs), (INF, recs)),
        responsiveness_sum=resp[0],
        responsiveness_count=resp[1],
        disliked_served=0,
        withheld_served=0,
        degraded=0,
        dislikes=resp[1],
    )


def test_points_are_rates_over_each_interval_without_the_consoles_own_polling() -> None:
    snaps = [
        _snap(100.0, recs=0, admin=0),
        _snap(105.0, recs=50, admin=7, resp=(-1.2, 2)),
        _snap(110.0, recs=50, admin=9, resp=(-1.2, 2)),
    ]
    first, second = live_points(snaps, latency_route=RECOMMENDATIONS_PATH)
    assert first.at == 105.0 and first.seconds == 5.0
    assert first.api_requests_per_second == 10.0 and first.recommendations_per_second == 10.0
    assert first.latency_p50_seconds == pytest.approx(0.005)
    assert first.responsiveness_mean == pytest.approx(-0.6) and first.responsiveness_samples == 2
    assert first.dislikes_per_second == pytest.approx(0.4)
    # Nothing happened in the second interval: no latency, no responsiveness, rate 0.
    assert second.api_requests_per_second == 0.0
    assert second.latency_p50_seconds is None and second.responsiveness_mean is None


def test_fewer_than_two_snapshots_or_a_clock_going_back_give_no_point() -> None:
    assert live_points([], latency_route=RECOMMENDATIONS_PATH) == []
    one = [_snap(100.0, recs=1, admin=0)]
    assert live_points(one, latency_route=RECOMMENDATIONS_PATH) == []
    back = [_snap(100.0, recs=1, admin=0), _snap(99.0, recs=2, admin=0)]
    assert live_points(back, latency_route=RECOMMENDATIONS_PATH) == []


@pytest.mark.anyio
async def test_live_reports_the_requests_and_the_measured_dislikes_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    redis_client: redis.Redis,
    world: SyntheticWorld,
) -> None:
    publish_version(1)
    # A user whose dislike moves the share of its category (as in test_metrics).
    likes = items_in(world, "c1", 2) + items_in(world, "c2", 2)
    disliked = items_in(world, "c2", 3)[2]
    # A long interval: the test takes the snapshots itself.
    async with serve(responsiveness_sample_rate=1.0, live_interval_seconds=300) as (app, client):
        live = app.state.live_metrics  # one snapshot taken at start
        empty = (await client.get("/v1/admin/live")).json()
        await client.post("/v1/feedback", json={"events": [event("lia", i, "like") for i in likes]})
        live.sample()
        for _ in range(4):
            assert len(await recommended(client, "lia")) == 10
        await client.post("/v1/feedback", json={"events": [event("lia", disliked, "dislike")]})
        await asyncio.wait_for(app.state.services.probe.drained(), timeout=10)
        live.sample()
        before = redis_state(redis_client)
        body = (await client.get("/v1/admin/live", params={"unknown": "ignored"})).json()
        assert redis_state(redis_client) == before
    assert empty["points"] == [] and empty["interval_seconds"] == 300
    assert empty["totals"]["disliked_served"] == 0
    point = body["points"][-1]  # between the test's two snapshots
    assert point["recommendations_per_second"] * point["seconds"] == pytest.approx(4)
    assert point["feedback_per_second"] * point["seconds"] == pytest.approx(1)
    # The live endpoint called once before: not API traffic.
    assert point["api_requests_per_second"] * point["seconds"] == pytest.approx(5)
    assert point["latency_p50_seconds"] is not None and point["latency_p50_seconds"] > 0
    assert point["responsiveness_samples"] == 1
    assert -1.0 <= point["responsiveness_mean"] < 0.0
    assert point["disliked_served_total"] == 0
    assert body["totals"]["responsiveness_samples"] == 1


@pytest.mark.anyio
async def test_the_sampler_runs_by_itself_and_keeps_only_its_window(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve(live_interval_seconds=0.02, live_window_seconds=0.1) as (_, client):
        await asyncio.sleep(0.3)
        body = (await client.get("/v1/admin/live")).json()
    # window / interval + 1 snapshots kept: at most 5 intervals.
    assert 1 <= len(body["points"]) <= 5
    ats = [p["at"] for p in body["points"]]
    assert ats == sorted(ats)
