"""GET recommendations through ``veto proxy`` (what ``veto up --replicas N`` puts on --port)
against the same requests straight to the replica behind it, and through the proxy over two
replicas. The same load generator (bench.common.run_load) drives the three in turn, for
``rounds`` rounds; each figure is the median over its rounds."""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench import procs
from bench.common import LoadResult, run_load
from bench.profile import cpu_seconds
from bench.report import Figure
from bench.stack import Stack
from veto.cli.redis_server import free_port

AIM_RATIO = 0.9  # the proxy may cost at most a tenth of one replica's GET throughput


def _proxy(stack: Stack, replicas: list[procs.Child], name: str) -> procs.Child:
    """``veto proxy`` on a free port in front of ``replicas``, ready (/readyz through it)."""
    port = free_port()
    upstreams = [arg for r in replicas for arg in ("--upstream", f"127.0.0.1:{r.port}")]
    cmd = [sys.executable, "-m", "veto.cli", "proxy", "--port", str(port), *upstreams]
    child = procs.start(name, cmd, env=stack.env, logdir=stack.logdir, port=port)
    return procs.ready(child, timeout=30)


def measure(
    stack: Stack, *, concurrency: int, duration: float, warmup: float, rounds: int = 3
) -> tuple[list[Figure], dict[str, Any]]:
    """Median req/s and p50 of: straight to one replica, through the proxy to it, through
    the proxy to it and a second replica (same Redis and artifacts)."""
    paths = list(stack.user_paths())
    second = procs.serve(env=stack.env, logdir=stack.logdir, name="service-2")
    started = [second]
    try:
        started.append(one := _proxy(stack, [stack.service], "proxy-1"))
        started.append(two := _proxy(stack, [stack.service, second], "proxy-2"))
        targets = {"direct": stack.service.url, "proxy_1": one.url, "proxy_2": two.url}
        runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
        # CPU seconds of the proxy and of its replica over the proxy_1 runs (warm-up included).
        cpu = {"proxy": 0.0, "replica": 0.0}
        for _ in range(rounds):
            for name, url in targets.items():
                before = (cpu_seconds(one.proc.pid), cpu_seconds(stack.service.proc.pid))
                runs[name].append(
                    run_load(url, paths, concurrency=concurrency, duration=duration, warmup=warmup)
                )
                if name == "proxy_1":
                    cpu["proxy"] += cpu_seconds(one.proc.pid) - before[0]
                    cpu["replica"] += cpu_seconds(stack.service.proc.pid) - before[1]
    finally:
        for child in reversed(started):
            child.stop()
    rps = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
    # Requests over the whole of each run, warm-up included: the measured rate times its span.
    served = sum(r.rps * (warmup + duration) for r in runs["proxy_1"])
    cpu_us = {k: round(v / served * 1e6, 1) if served else 0.0 for k, v in cpu.items()}
    p50 = {name: statistics.median(r.p50_ms for r in rs) for name, rs in runs.items()}
    errors = {name: sum(r.errors for r in rs) for name, rs in runs.items()}
    n = f"{stack.n_items // 1000}k" if stack.n_items < 1_000_000 else f"{stack.n_items / 1e6:g}M"
    direct = "straight to the replica"
    ratio = rps["proxy_1"] / rps["direct"] if rps["direct"] else 0.0
    figures = [
        Figure(
            f"GET req/s via veto proxy, 1 replica, {n} items",
            rps["proxy_1"],
            "req/s",
            direct,
            rps["direct"],
            aim=f"ratio >= {AIM_RATIO}",
            passed=ratio >= AIM_RATIO,
        ),
        Figure(
            f"GET p50 via veto proxy, 1 replica, {n} items",
            p50["proxy_1"],
            "ms",
            direct,
            p50["direct"],
        ),
        Figure(
            f"GET req/s via veto proxy, 2 replicas, {n} items",
            rps["proxy_2"],
            "req/s",
            direct,
            rps["direct"],
        ),
        Figure(
            f"veto proxy CPU per GET, {n} items (approx.)",
            cpu_us["proxy"],
            "µs",
            "the replica's CPU per GET",
            cpu_us["replica"],
        ),
        Figure.must_be_zero(
            f"GET failed requests via veto proxy, {n} items",
            float(errors["proxy_1"] + errors["proxy_2"]),
        ),
    ]
    details = {
        "rounds": {name: [dict(r.__dict__) for r in rs] for name, rs in runs.items()},
        "median_rps": rps,
        "median_p50_ms": p50,
        "errors": errors,
        "cpu_seconds_proxy_1_runs": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_us_per_request": cpu_us,
        "cpu_note": "utime+stime from /proc over the proxy_1 runs, warm-up included, divided by "
        "rps x (warmup + duration) of each run",
        "items": stack.n_items,
        "users": stack.n_users,
        "concurrency": concurrency,
        "duration_s": duration,
        "warmup_s": warmup,
        "order": "each round: direct, proxy over 1 replica, proxy over 2 replicas",
        "load_generator": "bench.common.run_load (aiohttp, own process, closed loop)",
    }
    return figures, details
