"""Shared benchmark helpers: the machine description, an HTTP load generator run in its own
process, percentiles, waiting for a server, writing results."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def machine() -> dict[str, Any]:
    """CPU count, CPU model, Python version, platform."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def wait_ready(url: str, *, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


async def _drive(
    base: str, paths: list[str], *, concurrency: int, duration: float, warmup: float, seed: int
) -> LoadResult:
    import aiohttp  # only the load generator process needs it

    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    async with session.get(rng.choice(paths)) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - measure_from
    lat = np.asarray(latencies) * 1000.0
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=round(elapsed, 3),
        rps=round(len(latencies) / elapsed, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 3) if lat.size else float("nan"),
        p99_ms=round(float(np.percentile(lat, 99)), 3) if lat.size else float("nan"),
        mean_ms=round(float(lat.mean()), 3) if lat.size else float("nan"),
    )


def _load_process(queue: Any, kwargs: dict[str, Any]) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    queue.put(asdict(asyncio.run(_drive(**kwargs))))


def run_load(
    base: str,
    paths: list[str],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    seed: int = 0,
) -> LoadResult:
    """Drive ``base`` with GETs of random ``paths`` from a separate process (so the
    generator does not share an interpreter with the benchmark driver)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    kwargs = dict(
        base=base, paths=paths, concurrency=concurrency, duration=duration, warmup=warmup, seed=seed
    )
    proc = ctx.Process(target=_load_process, args=(queue, kwargs))
    proc.start()
    result = queue.get(timeout=warmup + duration + 120)
    proc.join(timeout=30)
    return LoadResult(**result)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
