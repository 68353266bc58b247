"""Hot swap under load: constant GET load on the service; mid-run a new version (written
beforehand, as the trainer would) is published. Failed requests over the whole run must
be 0; p99 in the swap window (publish until the service reports the new version, plus a
second, at least 2 s) is compared with p99 before the publish."""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench import procs
from bench.loadgen import Mix, start_load
from bench.report import Figure
from bench.stack import Stack, publish, write_next_version


def _wait_version(url: str, version: int, *, timeout: float) -> float:
    """Poll /readyz until it reports ``version``; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                body = http.get(f"{url}/readyz").json()
                if body.get("model_version") == version:
                    return time.monotonic()
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.02)
    raise TimeoutError(f"service did not swap to version {version} within {timeout}s")


def measure(
    stack: Stack,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    swap_at: float,
    flat_max_items: int,
) -> tuple[list[Figure], dict[str, Any]]:
    """Publish at ``swap_at`` seconds into the measured span of a ``duration`` s GET load."""
    if not 0 < swap_at < duration - 3:
        raise ValueError("swap_at must leave at least 3 s of load after the publish")
    t0 = time.perf_counter()
    version = write_next_version(stack.artifacts, parent=1, flat_max_items=flat_max_items, seed=7)
    write_seconds = time.perf_counter() - t0
    run = start_load(
        stack.service.url,
        Mix(get_paths=stack.user_paths()),
        concurrency=concurrency,
        duration=duration,
        warmup=warmup,
    )
    try:
        time.sleep(warmup + swap_at + 1.0)  # +1 s: the generator process starts (spawn)
        published = time.monotonic()
        publish(stack.redis_url, version)
        seen = _wait_version(stack.service.url, version, timeout=duration)
    except BaseException:
        run.kill()
        raise
    records = run.result()
    metrics = procs.scrape(stack.service)
    window_end = max(seen + 1.0, published + 2.0)
    whole = records.window()
    before = records.window(until=published)
    during = records.window(since=published, until=window_end)
    after = records.window(since=window_end)
    p99_before = before["p99_ms"] or 0.0
    figures = [
        Figure.must_be_zero("failed requests during the run", float(whole["failed"])),
        Figure(
            "GET p99 during the swap window",
            during["p99_ms"] or 0.0,
            "ms",
            "p99 before the publish",
            p99_before,
        ),
        Figure("publish-to-swapped", round(seen - published, 3), "s", "pointer poll interval", 1.0),
    ]
    details = {
        "items": stack.n_items,
        "index": stack.index,
        "new_version": version,
        "write_version_seconds": round(write_seconds, 2),
        "whole_run": whole,
        "before": before,
        "during_swap_window": during,
        "after": after,
        "statuses": records.statuses,
        "swaps": metrics.get("veto_model_swap_duration_seconds_count"),
        "swap_failures": metrics.get("veto_model_swap_failures_total"),
        "concurrency": concurrency,
        "duration_s": duration,
        "warmup_s": warmup,
    }
    return figures, details
