"""The console's "Responsiveness now" (``GET /v1/admin/live``): this replica's own metrics,
sampled every few seconds into a short window and served as rates, quantiles and means per
interval, so a page shows the last minutes without a Prometheus server.

Off the request path: a background task reads the registry's current values (a few dozen
samples) every ``interval`` seconds. The core is pure: ``take_snapshot`` reads the metrics
into a ``Snapshot``, ``live_points`` diffs consecutive snapshots, ``bucket_quantile``
interpolates a histogram quantile as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from service.background import Background
from service.metrics import ServiceMetrics
from service.schemas import LivePoint, LiveSeries, LiveTotals

log = logging.getLogger(__name__)
# Requests to these route templates are the API's traffic; the console's own polling
# (/v1/admin/*), the docs and /metrics are not.
API_PREFIX = "/v1/"
ADMIN_PREFIX = "/v1/admin/"
FEEDBACK_ROUTE = "/v1/feedback"
Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


@dataclass(frozen=True)
class Snapshot:
    """The cumulative values of the metrics the console shows, at wall-clock time ``at``."""

    at: float
    requests: dict[str, float]  # route template -> requests answered so far
    latency: Buckets  # the recommendations route's duration histogram, all statuses
    responsiveness_sum: float
    responsiveness_count: float
    disliked_served: float
    withheld_served: float
    degraded: float
    dislikes: float


def _samples(metric: MetricWrapperBase) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in metric.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def _total(metric: MetricWrapperBase, **labels: str) -> float:
    """A counter's ``_total`` (of the children whose labels include ``labels``)."""
    return sum(
        value
        for name, have, value in _samples(metric)
        if name.endswith("_total") and all(have.get(k) == v for k, v in labels.items())
    )


def take_snapshot(metrics: ServiceMetrics, *, at: float, latency_route: str) -> Snapshot:
    """Read the current values (``latency_route``: the route template whose latency is kept)."""
    requests: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for name, labels, value in _samples(metrics.request_duration):
        route = labels.get("route", "")
        if name.endswith("_count"):
            requests[route] = requests.get(route, 0.0) + value
        elif name.endswith("_bucket") and route == latency_route:
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    response = {
        name.rsplit("_", 1)[-1]: value for name, _, value in _samples(metrics.responsiveness)
    }
    return Snapshot(
        at=at,
        requests=requests,
        latency=tuple(sorted(buckets.items())),
        responsiveness_sum=response.get("sum", 0.0),
        responsiveness_count=response.get("count", 0.0),
        disliked_served=_total(metrics.disliked_item_served),
        withheld_served=_total(metrics.withheld_item_served),
        degraded=_total(metrics.degraded_responses),
        dislikes=_total(metrics.feedback_events, type="dislike"),
    )


def bucket_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of cumulative ``buckets``, linearly interpolated inside its bucket
    (the first bucket from 0); the highest finite bound when it falls in +Inf; None without
    observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _api_requests(requests: dict[str, float]) -> float:
    return sum(
        n
        for route, n in requests.items()
        if route.startswith(API_PREFIX) and not route.startswith(ADMIN_PREFIX)
    )


def live_points(snapshots: Sequence[Snapshot], *, latency_route: str) -> list[LivePoint]:
    """One point per pair of consecutive snapshots: rates over the interval between them,
    the latency quantiles and the mean responsiveness of what happened in it (None when
    nothing did), and the disliked-items-served counter at its end."""
    out: list[LivePoint] = []
    for old, new in itertools.pairwise(snapshots):
        dt = new.at - old.at
        if dt <= 0:
            continue
        latency = tuple(
            (bound, count - before)
            for (bound, count), (_, before) in zip(
                new.latency, _aligned(old.latency, new.latency), strict=True
            )
        )
        samples = new.responsiveness_count - old.responsiveness_count
        shift = new.responsiveness_sum - old.responsiveness_sum
        out.append(
            LivePoint(
                at=new.at,
                seconds=dt,
                api_requests_per_second=(_api_requests(new.requests) - _api_requests(old.requests))
                / dt,
                recommendations_per_second=_delta(old.requests, new.requests, latency_route) / dt,
                feedback_per_second=_delta(old.requests, new.requests, FEEDBACK_ROUTE) / dt,
                latency_p50_seconds=bucket_quantile(0.5, latency),
                latency_p99_seconds=bucket_quantile(0.99, latency),
                responsiveness_mean=shift / samples if samples > 0 else None,
                responsiveness_samples=int(samples),
                dislikes_per_second=(new.dislikes - old.dislikes) / dt,
                degraded_per_second=(new.degraded - old.degraded) / dt,
                disliked_served_total=int(new.disliked_served),
            )
        )
    return out


def _delta(old: dict[str, float], new: dict[str, float], route: str) -> float:
    return new.get(route, 0.0) - old.get(route, 0.0)


def _aligned(old: Buckets, new: Buckets) -> Buckets:
    """``old``'s counts on ``new``'s bounds (0 where the older snapshot had no observation)."""
    counts = dict(old)
    return tuple((bound, counts.get(bound, 0.0)) for bound, _ in new)


def totals(now: Snapshot) -> LiveTotals:
    """The counters since the process started."""
    return LiveTotals(
        disliked_served=int(now.disliked_served),
        withheld_served=int(now.withheld_served),
        degraded_responses=int(now.degraded),
        responsiveness_samples=int(now.responsiveness_count),
        responsiveness_mean=(
            now.responsiveness_sum / now.responsiveness_count if now.responsiveness_count else None
        ),
    )


class LiveMetrics:
    """Samples ``metrics`` every ``interval`` seconds, keeping ``window`` seconds of them."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        interval: float,
        window: float,
        latency_route: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._interval = interval
        self._window = window
        self._route = latency_route
        self._clock = clock
        self._snapshots: deque[Snapshot] = deque(maxlen=max(2, math.ceil(window / interval) + 1))
        self._background = Background("veto-live-metrics", self._run)

    def sample(self) -> None:
        """Take one snapshot now."""
        self._snapshots.append(self._now())

    def _now(self) -> Snapshot:
        return take_snapshot(self._metrics, at=self._clock(), latency_route=self._route)

    def series(self) -> LiveSeries:
        """The window's points, oldest first, and the counters as they are now."""
        return LiveSeries(
            interval_seconds=self._interval,
            window_seconds=self._window,
            points=live_points(list(self._snapshots), latency_route=self._route),
            totals=totals(self._now()),
        )

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # the sampler must not die: the console would freeze
                log.exception("live metrics sample failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
