"""Service memory: VmRSS of ``veto serve`` holding N items vs the raw size of the item
vectors (N x D x 4 bytes), with an idle bare FastAPI process's RSS as the fixed overhead."""

from __future__ import annotations

from typing import Any

from bench.procs import Child
from bench.report import Figure
from bench.stack import Stack

MIB = 1024**2


def measure(stack: Stack, bare: Child) -> tuple[list[Figure], dict[str, Any]]:
    """RSS now (call it after the stack has served load, so the index pages are touched)."""
    rss = stack.service.rss_bytes()
    bare_rss = bare.rss_bytes()
    raw = stack.raw_vector_bytes()
    n = f"{stack.n_items // 1000}k" if stack.n_items < 1_000_000 else f"{stack.n_items / 1e6:g}M"
    figures = [
        Figure(
            f"service RSS, {n} items",
            round(rss / MIB, 1),
            "MiB",
            "raw item vectors N×D×4",
            round(raw / MIB, 1),
        ),
        Figure(
            f"service RSS minus bare FastAPI RSS, {n} items",
            round((rss - bare_rss) / MIB, 1),
            "MiB",
            "raw item vectors N×D×4",
            round(raw / MIB, 1),
        ),
    ]
    details = {
        "items": stack.n_items,
        "index": stack.index,
        "service_rss_bytes": rss,
        "bare_fastapi_rss_bytes": bare_rss,
        "raw_vector_bytes": raw,
        "source": "/proc/<pid>/status VmRSS",
    }
    return figures, details
