"""Service memory: VmRSS of ``veto serve`` holding N items vs the raw size of the item
vectors (N x D x 4 bytes), with an idle bare FastAPI process's RSS as the fixed overhead;
and the recall@10 of the search it serves against exact search.

The item vectors are a memory-mapped file: only the pages a request touched are resident, so
RSS after a short load can be below what a long-running replica reaches. The bound row counts
every page of that mapping as resident (RSS - its resident part + its whole size).

Recall: the user vectors of seeded users, computed from their Redis histories as the service
does (``service.retrieval``), searched by ``service.retrieval.search`` at the default
settings (over-fetch, IVF candidates re-scored exactly, no serving-time adjustment) and by
brute force over the same vectors; details also hold the recall at other nprobe values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import redis

from bench.procs import Child
from bench.report import Figure
from bench.serve import PARTITIONS
from bench.stack import Stack
from service.model_holder import ServingModel
from service.reloader import load_serving_model
from service.retrieval import history_rows, search
from veto.artifacts import ITEM_VECTORS
from veto.keys import UserKeys
from veto.settings import ServiceSettings

MIB = 1024**2
RECALL_AIM = 0.95  # issue 12
NPROBE_SWEEP = (16, 32, 64, 128)


def measure(stack: Stack, bare: Child) -> tuple[list[Figure], dict[str, Any]]:
    """RSS now (call it after the stack has served load, so the index pages are touched)."""
    rss = stack.service.rss_bytes()
    bare_rss = bare.rss_bytes()
    raw = stack.raw_vector_bytes()
    mapped = mapped_rss_bytes(stack.service.proc.pid, ITEM_VECTORS)
    bound = rss - mapped + raw
    recall, sweep, queries = served_recall(stack)
    n = f"{stack.n_items // 1000}k" if stack.n_items < 1_000_000 else f"{stack.n_items / 1e6:g}M"
    vectors = "raw item vectors N×D×4"
    figures = [
        Figure(f"service RSS, {n} items", round(rss / MIB, 1), "MiB", vectors, round(raw / MIB, 1)),
        Figure(
            f"service RSS minus bare FastAPI RSS, {n} items",
            round((rss - bare_rss) / MIB, 1),
            "MiB",
            vectors,
            round(raw / MIB, 1),
        ),
        Figure(
            f"service RSS with every vector page resident, {n} items",
            round(bound / MIB, 1),
            "MiB",
            vectors,
            round(raw / MIB, 1),
            # Issue 12's target is at 1M items; below, the process's fixed ~90 MiB dominates.
            aim="<= 2.2x" if stack.n_items >= 1_000_000 else "",
            passed=bound <= 2.2 * raw if stack.n_items >= 1_000_000 else None,
        ),
        Figure(
            f"recall@10 of the served search vs exact, {n} items",
            round(recall, 4),
            "",
            "aim (issue 12)",
            RECALL_AIM,
            aim=">= 0.95",
            passed=recall >= RECALL_AIM,
        ),
    ]
    details = {
        "items": stack.n_items,
        "index": stack.index,
        "service_rss_bytes": rss,
        "bare_fastapi_rss_bytes": bare_rss,
        "raw_vector_bytes": raw,
        "item_vectors_resident_bytes": mapped,
        "recall_queries": queries,
        "recall_at_10_by_nprobe": sweep,
        "source": "/proc/<pid>/status VmRSS, /proc/<pid>/smaps Rss of item_vectors.npy",
    }
    return figures, details


def mapped_rss_bytes(pid: int, name: str) -> int:
    """Resident bytes of the process's mappings of files named ``name``."""
    total, inside = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = len(fields) >= 6 and fields[-1].endswith("/" + name)
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1]) * 1024
    return total


def served_recall(
    stack: Stack, *, users: int = 500, k: int = 10
) -> tuple[float, dict[int, float], int]:
    """Recall@k of the served search at the version's nprobe, that recall at the other
    nprobe values of the sweep (IVF only), and the number of queries."""
    model = load_serving_model(stack.artifacts, 1)
    queries = _user_vectors(stack, model, users)  # (Q, D)
    base = np.ascontiguousarray(model.version.vectors, dtype=np.float32)
    _, exact = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)  # (Q, k)
    overfetch = ServiceSettings().overfetch

    def recall() -> float:
        none = np.empty(0, dtype=np.int64)
        hits = 0
        for query, truth in zip(queries, exact, strict=True):
            got = search(model, query, k=k, blocked=none, overfetch=overfetch).rows
            hits += len(set(got.tolist()) & set(truth.tolist()))
        return hits / (len(queries) * k)

    served = recall()
    sweep: dict[int, float] = {}
    ivf = None if model.version.index is None else faiss.extract_index_ivf(model.version.index)
    if ivf is not None:
        default = ivf.nprobe
        for nprobe in NPROBE_SWEEP:
            ivf.nprobe = nprobe
            sweep[nprobe] = round(recall(), 4)
        ivf.nprobe = default
    return served, sweep, len(queries)


def _user_vectors(stack: Stack, model: ServingModel, users: int) -> np.ndarray:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        rows = []
        for user in np.random.default_rng(7).choice(stack.n_users, size=users, replace=False):
            user_id = f"u{user}"
            history = client.lrange(UserKeys(user_id, PARTITIONS).history, 0, -1)
            item_rows, types = history_rows(model, history)
            if item_rows:
                encoder = model.version.encoder
                rows.append(encoder.encode(model.version.vectors, item_rows, types, user_id))
    finally:
        client.close()
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
