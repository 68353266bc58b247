"""Feedback ingest: events/s and p99 through ``POST /v1/feedback`` (single events and batches
of 100) vs a bare FastAPI POST endpoint that parses the same JSON body into the service's own
schema and returns a fixed answer, one after the other in the same run: same load generator
process, same bodies, Redis with ``appendfsync always``. Aim (issue 12): batches of 100 at
>= 30,000 events/s. Where the time goes: bench/profile.py (``make bench`` runs both)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bench.loadgen import POST, Mix, run_mix
from bench.procs import Child
from bench.report import Figure
from bench.stack import API_KEY, Stack
from service.schemas import FeedbackBatch, FeedbackResult

BATCHES = (1, 100)
BATCH_AIM = {100: 30_000.0}  # events/s with appendfsync always (issue 12)


def bare_app() -> FastAPI:
    """The reference: the same route and body schema, no Redis, a fixed answer."""
    app = FastAPI()

    @app.post("/v1/feedback", response_model=FeedbackResult)
    async def feedback(batch: FeedbackBatch) -> FeedbackResult:
        return FeedbackResult(accepted=1, duplicates=0)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def measure(
    stack: Stack, bare: Child, *, concurrency: int, duration: float, warmup: float
) -> tuple[list[Figure], dict[str, Any]]:
    """Events/s and p99 per batch size, service vs bare, each event with a fresh id."""
    figures: list[Figure] = []
    details: dict[str, Any] = {
        "concurrency": concurrency,
        "duration_s": duration,
        "warmup_s": warmup,
        "redis_appendfsync": "always",
        "api_key_checked": True,
        "load_generator": "bench.loadgen (aiohttp, own process, closed loop)",
    }
    for batch in BATCHES:
        mix = Mix(
            post_share=1.0, batch=batch, users=stack.n_users, items=stack.n_items, api_key=API_KEY
        )
        load = dict(concurrency=concurrency, duration=duration, warmup=warmup)
        service = run_mix(stack.service.url, mix, **load).window(kind=POST)
        reference = run_mix(bare.url, mix, **load).window(kind=POST)
        figures += [
            Figure(
                f"feedback events/s, batch {batch}",
                service["rps"] * batch,
                "events/s",
                "bare FastAPI POST",
                reference["rps"] * batch,
                **_aim(batch, service["rps"] * batch),
            ),
            Figure(
                f"feedback p99, batch {batch}",
                service["p99_ms"] or 0.0,
                "ms",
                "bare FastAPI POST",
                reference["p99_ms"] or 0.0,
            ),
            Figure(
                f"feedback failed requests, batch {batch}",
                float(service["failed"]),
                "",
                "bare FastAPI POST",
                float(reference["failed"]),
                aim="0",
                passed=service["failed"] == 0,
            ),
        ]
        details[f"batch_{batch}"] = {"service": service, "reference": reference}
    return figures, details


def _aim(batch: int, events_per_second: float) -> dict[str, Any]:
    """The aim of a batch size, if it has one, and whether it was met."""
    aim = BATCH_AIM.get(batch)
    if aim is None:
        return {}
    return {"aim": f">= {aim:,.0f} events/s", "passed": events_per_second >= aim}
