"""Soak: Redis, ``veto serve`` and ``veto train`` (a round every few seconds) under a
constant 90 % GET / 10 % feedback POST load for a long run. Zero failed requests; service
RSS growth under 5 %, from the median of the window after the first minute to the median of
the last minute (windows of a fifth of a shorter run). RSS moves in steps of one model
version while a swap holds two, so a single sample at each end would measure the phase of
that sawtooth, not growth; the single-sample figure and the fitted slope are kept in the
details."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench import procs
from bench.loadgen import GET, POST, Mix, start_load
from bench.report import Figure
from bench.stack import API_KEY
from veto import registry

MIB = 1024**2
_METRICS = (
    "veto_disliked_item_served_total",
    "veto_model_swap_failures_total",
    "veto_model_swap_duration_seconds_count",
    "veto_degraded_responses_total",
    "veto_feedback_events_total",
    "veto_feedback_duplicates_total",
    "veto_recommendations_served_total",
)


def _current(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return registry.current(client)
    finally:
        client.close()


def measure(
    workdir: Path,
    *,
    n_items: int,
    seconds: float,
    concurrency: int,
    interval: float,
    sample_every: float = 5.0,
) -> tuple[list[Figure], dict[str, Any]]:
    """Run the soak for ``seconds`` of measured load and sample the service's RSS."""
    with procs.live_stack(workdir, n_items=n_items, interval=interval, api_key=API_KEY) as live:
        server, env, logdir, children = live.server, live.env, live.logdir, live.children
        bootstrap_seconds = live.bootstrap_seconds
        service = procs.serve(env=env, logdir=logdir)
        children.append(service)
        trainer = procs.train(env=env, logdir=logdir, interval=interval)
        children.append(trainer)
        users = max(500, n_items // 20)  # veto bootstrap's synthetic users
        mix = Mix(
            get_paths=tuple(f"/v1/users/u{u}/recommendations?k=10" for u in range(users)),
            post_share=0.1,
            batch=1,
            users=users,
            items=n_items,
            api_key=API_KEY,
        )
        first_version = _current(server.url)
        warmup = 5.0
        run = start_load(service.url, mix, concurrency=concurrency, duration=seconds, warmup=warmup)
        samples: list[tuple[float, int]] = []
        try:
            end = time.monotonic() + warmup + seconds + 1.0
            while time.monotonic() < end:
                if service.proc.poll() is not None or trainer.proc.poll() is not None:
                    raise RuntimeError(f"a process died:\n{service.tail()}\n{trainer.tail()}")
                samples.append((time.monotonic(), service.rss_bytes()))
                time.sleep(sample_every)
        except BaseException:
            run.kill()
            raise
        records = run.result()
        samples.append((time.monotonic(), service.rss_bytes()))
        metrics = procs.scrape(service)
        last_version = _current(server.url)
        trainer_rss = trainer.rss_bytes()
    growth = rss_growth(samples, start=records.measure_from, seconds=seconds)
    whole = records.window()
    figures = [
        Figure.must_be_zero("failed requests", float(whole["failed"])),
        Figure(
            "service RSS growth, median of minute 2 to median of the last minute",
            growth.median_percent,
            "%",
            "limit",
            5.0,
            aim="< 5 %",
            passed=growth.median_percent < 5.0,
        ),
        # -1 when the counter is missing: a soak that cannot see it must not pass.
        Figure.must_be_zero(
            "disliked items served", metrics.get("veto_disliked_item_served_total", -1.0)
        ),
        Figure(
            "versions published during the soak",
            float(last_version - first_version),
            "",
            "seconds / trainer interval",
            round(seconds / interval, 1),
        ),
    ]
    details = {
        "seconds": seconds,
        "items": n_items,
        "users": users,
        "concurrency": concurrency,
        "trainer_interval_s": interval,
        "bootstrap_seconds": round(bootstrap_seconds, 1),
        "mix": "90 % GET recommendations, 10 % POST feedback (single events)",
        "whole_run": whole,
        "get": records.window(kind=GET),
        "post": records.window(kind=POST),
        "statuses": records.statuses,
        "rss_growth": growth.as_dict(),
        "rss_max_mib": round(max(r for _, r in samples) / MIB, 1),
        "rss_samples_mib": [
            [round(t - records.measure_from, 1), round(r / MIB, 1)] for t, r in samples
        ],
        "trainer_rss_end_mib": round(trainer_rss / MIB, 1),
        "versions": [first_version, last_version],
        "service_metrics": {k: v for k, v in metrics.items() if k in _METRICS},
    }
    return figures, details


@dataclass(frozen=True)
class RssGrowth:
    """Service RSS growth over a soak, three ways (MiB and percent)."""

    base_median_mib: float  # window right after the warm-up minute
    end_median_mib: float  # last window
    median_percent: float
    first_sample_mib: float  # single samples at the same two points
    last_sample_mib: float
    point_percent: float
    slope_mib_per_min: float  # least squares over every sample after the warm-up minute

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def rss_growth(samples: list[tuple[float, int]], *, start: float, seconds: float) -> RssGrowth:
    """Growth between the median RSS of the window after the first minute and the median of
    the last window; a window is a minute, or a fifth of a run shorter than five minutes."""
    window = min(60.0, seconds / 5)
    after = [(t, r / MIB) for t, r in samples if t >= start + window]
    if len(after) < 2:
        raise ValueError("too few RSS samples after the warm-up window")
    end = after[-1][0]
    base = [r for t, r in after if t < start + 2 * window] or [after[0][1]]
    last = [r for t, r in after if t >= end - window]
    base_med, last_med = statistics.median(base), statistics.median(last)
    times = [(t - start) / 60.0 for t, _ in after]
    slope = statistics.linear_regression(times, [r for _, r in after]).slope
    first, final = after[0][1], after[-1][1]
    return RssGrowth(
        base_median_mib=round(base_med, 1),
        end_median_mib=round(last_med, 1),
        median_percent=round(100.0 * (last_med - base_med) / base_med, 2),
        first_sample_mib=round(first, 1),
        last_sample_mib=round(final, 1),
        point_percent=round(100.0 * (final - first) / first, 2),
        slope_mib_per_min=round(slope, 2),
    )
