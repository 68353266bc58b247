"""Cold start end to end (issue 13): seconds from ``PUT /v1/items/{id}`` of a new item to the
item appearing in ``GET /v1/items/{q}/similar?k=10`` for an item q of its category.

Redis (AOF, ``appendfsync always``), ``veto serve`` and ``veto train`` as subprocesses on a
synthetic catalog bootstrapped with N items (20 planted categories; an IVF index above
``flat_max_items``, as the serving benchmarks). Per trial: a new item id in category
c{trial mod 20} is PUT, then ``similar`` (k=10) of that category's ``QUERIES`` most central
items (nearest to the category's mean vector in version 1, so nearest to the cold-start
vector) is polled every 50 ms until the new item is among the answers of one of them. Not
only the most central one: ``similar`` ranks with the item prior too (veto.ranking), which
is 0 for a new item and positive for liked ones, so a cold item can sit just below the 10th
answer of one category item and among those of the next. Trials are spaced by more than the
trainer's interval (an idle trainer, as the freshness benchmark); a first warm-up trial is
not counted.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import procs
from bench.report import Figure
from bench.stack import API_KEY
from veto.artifacts import load_version, version_dir

N_CATEGORIES = 20  # veto bootstrap's synthetic world
QUERIES = 10  # the category items whose similar answers are polled
TIMEOUT = 300.0


def _central_items(artifacts: Path) -> dict[str, list[str]]:
    """Per category, its ``QUERIES`` items nearest to the category's mean vector (v1)."""
    version = load_version(version_dir(artifacts, 1), verify=False)
    vectors = np.asarray(version.vectors)
    out: dict[str, list[str]] = {}
    for name, rows in version.categories.rows_by_name().items():
        mean = vectors[rows].mean(axis=0)
        nearest = rows[np.argsort(-(vectors[rows] @ mean))[:QUERIES]]
        out[name] = version.item_ids.names(nearest)
    return out


def _trial(http: httpx.Client, category: str, queries: list[str]) -> tuple[float, int, int]:
    """PUT a new item of ``category``; seconds until ``similar`` of one of ``queries`` lists
    it, which of them (0: the most central) and its rank there."""
    item = f"cold-{uuid.uuid4().hex[:12]}"
    t0 = time.perf_counter()
    resp = http.put(
        f"/v1/items/{item}", json={"category": category}, headers={"X-API-Key": API_KEY}
    )
    resp.raise_for_status()
    while time.perf_counter() - t0 < TIMEOUT:
        for n, query in enumerate(queries):
            found = http.get(f"/v1/items/{query}/similar", params={"k": 10})
            found.raise_for_status()
            ids = [x["item_id"] for x in found.json()["items"]]
            if item in ids:
                return time.perf_counter() - t0, n, ids.index(item) + 1
        time.sleep(0.05)
    raise RuntimeError(f"{item} ({category}) not in similar of {queries} within {TIMEOUT:g} s")


def measure(
    workdir: Path, *, n_items: int, trials: int, interval: float, flat_max_items: int
) -> tuple[list[Figure], dict[str, Any]]:
    """PUT-to-similar lag over ``trials`` new items, p50 and p90."""
    settings = {"VETO_FLAT_MAX_ITEMS": str(flat_max_items)}
    with procs.live_stack(
        workdir, n_items=n_items, interval=interval, api_key=API_KEY, settings=settings
    ) as live:
        env, logdir, children = live.env, live.logdir, live.children
        bootstrap_seconds = live.bootstrap_seconds
        central = _central_items(workdir / "artifacts")
        service = procs.serve(env=env, logdir=logdir)
        children.append(service)
        children.append(procs.train(env=env, logdir=logdir, interval=interval))
        lags: list[float] = []
        hits: list[tuple[int, int]] = []
        with httpx.Client(base_url=service.url, timeout=30.0) as http:
            # Trial -1 warms up (the trainer may still be importing torch): not counted.
            for trial in range(-1, trials):
                category = f"c{(trial + 1) % N_CATEGORIES}"
                lag, query, rank = _trial(http, category, central[category])
                print(f"  trial {trial}: {lag:.2f} s (query {query}, rank {rank})", flush=True)
                if trial >= 0:
                    lags.append(lag)
                    hits.append((query, rank))
                time.sleep(interval + 1.0)
    p50 = round(statistics.median(lags), 3)
    p90 = round(float(np.percentile(lags, 90)), 3)
    figures = [
        Figure(f"PUT-to-similar p50, {n_items:,} items", p50, "s", "trainer interval", interval),
        Figure(f"PUT-to-similar p90, {n_items:,} items", p90, "s", "trainer interval", interval),
    ]
    details = {
        "n_items": n_items,
        "trials": trials,
        "interval_seconds": interval,
        "flat_max_items": flat_max_items,
        "bootstrap_seconds": round(bootstrap_seconds, 1),
        "lags_seconds": [round(x, 3) for x in lags],
        "queries_per_trial": QUERIES,
        "hit_query_and_rank": hits,  # which central item's similar listed it (0: the most)
        "p50_seconds": p50,
        "p90_seconds": p90,
        "max_seconds": round(max(lags), 3),
        "source": "bench.catalog (Redis, veto serve, veto train; PUT, then poll similar k=10"
        f" of the category's {QUERIES} most central items)",
    }
    return figures, details
