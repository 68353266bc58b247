"""A mixed GET/POST HTTP load generator that runs in its own process and keeps every request.

bench/common.py's ``run_load`` drives GETs and returns one summary; the harness also needs
feedback POSTs (single events and batches, unique event ids), a GET/POST mix, and the
time of each request so a window (a hot swap, the end of a soak) can be cut out afterwards.
It is closed-loop: ``concurrency`` aiohttp workers each send the next request as soon as
the previous one is answered. Request times are ``time.monotonic()`` (CLOCK_MONOTONIC on
Linux, shared by all processes), so the driver can compare them with its own clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing as mp
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GET, POST = 0, 1


@dataclass(frozen=True)
class Mix:
    """What to send: GETs of ``get_paths`` and, with ``post_share``, feedback POSTs."""

    get_paths: tuple[str, ...] = ()
    post_share: float = 0.0
    batch: int = 1
    users: int = 1000
    items: int = 1000
    api_key: str | None = None
    post_path: str = "/v1/feedback"

    def __post_init__(self) -> None:
        if not 0.0 <= self.post_share <= 1.0:
            raise ValueError("post_share must be in [0, 1]")
        if self.post_share < 1.0 and not self.get_paths:
            raise ValueError("GETs requested but no get_paths given")
        if self.batch < 1 or self.users < 1 or self.items < 1:
            raise ValueError("batch, users and items must be >= 1")


@dataclass(frozen=True)
class Records:
    """Every request: start time (monotonic s), latency (s), ok, kind (GET/POST)."""

    start: np.ndarray  # (R,) float64
    latency: np.ndarray  # (R,) float64
    ok: np.ndarray  # (R,) bool
    kind: np.ndarray  # (R,) int8
    measure_from: float
    stop_at: float
    statuses: dict[str, int] = field(default_factory=dict)

    def window(
        self, *, since: float | None = None, until: float | None = None, kind: int | None = None
    ) -> dict[str, Any]:
        """Summary of the requests started in [since, until) (default: the measured span)."""
        lo = self.measure_from if since is None else since
        hi = self.stop_at if until is None else until
        mask = (self.start >= lo) & (self.start < hi)
        if kind is not None:
            mask &= self.kind == kind
        lat = self.latency[mask] * 1000.0  # (r,) ms
        seconds = max(hi - lo, 1e-9)
        return {
            "requests": int(mask.sum()),
            "failed": int((~self.ok[mask]).sum()),
            "seconds": round(seconds, 3),
            "rps": round(float(mask.sum()) / seconds, 1),
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "max_ms": round(float(lat.max()), 3) if lat.size else None,
        }


def _pct(lat: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(lat, q)), 3) if lat.size else None


def _feedback_body(mix: Mix, rng: random.Random, serial: Any, tag: str) -> bytes:
    types = ("like", "dislike", "click", "skip")
    events = [
        {
            "event_id": f"{tag}-{next(serial)}",
            "user_id": f"u{rng.randrange(mix.users)}",
            "item_id": f"i{rng.randrange(mix.items)}",
            "type": rng.choice(types),
        }
        for _ in range(mix.batch)
    ]
    return json.dumps({"events": events}).encode()


async def _drive(
    base: str, mix: Mix, *, concurrency: int, duration: float, warmup: float, seed: int
) -> Records:
    import aiohttp  # only the load generator process needs it

    rng = random.Random(seed)
    serial = itertools.count()
    tag = f"lg{seed}-{time.time_ns()}"  # event ids unique across runs: no dedupe hits
    headers = {"content-type": "application/json"}
    if mix.api_key:
        headers["X-API-Key"] = mix.api_key
    starts: list[float] = []
    latencies: list[float] = []
    oks: list[bool] = []
    kinds: list[int] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout) as s:
        measure_from = time.monotonic() + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            while True:
                post = rng.random() < mix.post_share
                body = _feedback_body(mix, rng, serial, tag) if post else b""
                t0 = time.monotonic()
                if t0 >= stop_at:
                    return
                try:
                    if post:
                        req = s.post(mix.post_path, data=body, headers=headers)
                    else:
                        req = s.get(rng.choice(mix.get_paths))
                    async with req as resp:
                        await resp.read()
                        status = str(resp.status)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status = type(exc).__name__
                starts.append(t0)
                latencies.append(time.monotonic() - t0)
                oks.append(status.startswith("2"))
                kinds.append(POST if post else GET)
                statuses[status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Records(
        start=np.asarray(starts, dtype=np.float64),
        latency=np.asarray(latencies, dtype=np.float64),
        ok=np.asarray(oks, dtype=bool),
        kind=np.asarray(kinds, dtype=np.int8),
        measure_from=measure_from,
        stop_at=stop_at,
        statuses=dict(statuses),
    )


def _process(queue: Any, base: str, mix: Mix, kwargs: dict[str, Any]) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    queue.put(asyncio.run(_drive(base, mix, **kwargs)))


class LoadRun:
    """A load generator process started by ``start_load``; ``result()`` waits for it."""

    def __init__(self, base: str, mix: Mix, **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._timeout = float(kwargs["warmup"]) + float(kwargs["duration"]) + 120.0
        self._proc = ctx.Process(target=_process, args=(self._queue, base, mix, kwargs))
        self._proc.start()

    def result(self) -> Records:
        """The records, once the run is over (read before join: the queue holds them)."""
        records: Records = self._queue.get(timeout=self._timeout)
        self._proc.join(timeout=30)
        return records

    def kill(self) -> None:
        """Stop the generator early (the driver failed)."""
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def start_load(
    base: str,
    mix: Mix,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    seed: int = 0,
) -> LoadRun:
    """Start driving ``base`` with ``mix`` from a separate process; returns at once."""
    if concurrency < 1 or duration <= 0 or warmup < 0:
        raise ValueError("need concurrency >= 1, duration > 0, warmup >= 0")
    return LoadRun(base, mix, concurrency=concurrency, duration=duration, warmup=warmup, seed=seed)


def run_mix(base: str, mix: Mix, **kwargs: Any) -> Records:
    """``start_load`` then wait for its records."""
    return start_load(base, mix, **kwargs).result()
