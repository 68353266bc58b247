"""GET recommendations vs the bare FastAPI endpoint of bench/serve.py (a fixed 10-item
list), both driven by bench/common.py's load generator process in the same run."""

from __future__ import annotations

from typing import Any

from bench.common import LoadResult, run_load
from bench.procs import Child
from bench.report import Figure
from bench.stack import Stack


def measure(
    stack: Stack, bare: Child, *, concurrency: int, duration: float, warmup: float
) -> tuple[list[Figure], dict[str, Any]]:
    """req/s and p50/p99 of the service and of the bare endpoint, same paths and load."""
    paths = list(stack.user_paths())
    service = run_load(
        stack.service.url, paths, concurrency=concurrency, duration=duration, warmup=warmup
    )
    reference = run_load(bare.url, paths, concurrency=concurrency, duration=duration, warmup=warmup)
    ratio = service.rps / reference.rps if reference.rps else 0.0
    n = f"{stack.n_items // 1000}k" if stack.n_items < 1_000_000 else f"{stack.n_items / 1e6:g}M"
    figures = [
        Figure(
            f"GET req/s, {n} items",
            service.rps,
            "req/s",
            "bare FastAPI",
            reference.rps,
            aim="ratio >= 0.6",
            passed=ratio >= 0.6,
        ),
        Figure(f"GET p50, {n} items", service.p50_ms, "ms", "bare FastAPI", reference.p50_ms),
        Figure(f"GET p99, {n} items", service.p99_ms, "ms", "bare FastAPI", reference.p99_ms),
        Figure(
            f"GET failed requests, {n} items",
            float(service.errors),
            "",
            "bare FastAPI",
            float(reference.errors),
            aim="0",
            passed=service.errors == 0,
        ),
    ]
    details = {
        "service": _asdict(service),
        "reference": _asdict(reference),
        "items": stack.n_items,
        "users": stack.n_users,
        "index": stack.index,
        "seed_seconds": stack.seed_seconds,
        "concurrency": concurrency,
        "duration_s": duration,
        "warmup_s": warmup,
        "load_generator": "bench.common.run_load (aiohttp, own process, closed loop)",
    }
    return figures, details


def _asdict(r: LoadResult) -> dict[str, Any]:
    return dict(r.__dict__)
