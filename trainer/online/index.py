"""The FAISS index each version ships, and keeping a large catalog's IVF index across rounds
instead of retraining it.

Policy: exact (flat) up to ``flat_max_items``, IVF above. The IVF lists hold 8-bit scalar
quantised codes by default (``IndexIVFScalarQuantizer`` QT_8bit, 64 B per item at dim 64
instead of 256): the service re-scores their candidates with the float vectors it maps
anyway (``veto.search``), so the float vectors exist once in its memory. ``encoding="flat"``
keeps float32 copies in the lists (``IndexIVFFlat``, what versions used before).

A round moves only the item rows it touched (the Adagrad update is row-sparse), so the next
version's index is the previous one with those rows removed and re-added under the same ids
(= rows). Training a 1M-item IVF takes ~10 s on 2 cores; this takes a fraction of a second.
But the coarse quantizer keeps the centroids of the vectors it was trained on: as rows
drift, a fixed nprobe finds less. ``IndexPlan`` measures that directly (recall@10 of the
index against exact search, on sampled items) and says when to train a new index. Counting
moved rows would not do: sampled negatives touch most rows a little in every round.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np

from veto.search import nearest

log = logging.getLogger("veto.trainer")

IvfEncoding = Literal["sq8", "flat"]
# Candidates re-scored per query in the recall check: k + the service's default overfetch.
RECALL_CANDIDATES = 30


def build_index(
    vectors: np.ndarray, *, flat_max_items: int, nprobe: int, encoding: IvfEncoding = "sq8"
) -> Any:
    """An inner-product index over unit vectors (N, D), ids = rows: exact below
    ``flat_max_items``, IVF with ~4·sqrt(N) lists above (trained on a sample of at most 64
    vectors per list), its lists holding ``encoding`` codes."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n <= flat_max_items:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    nlist = max(1, int(4 * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = (
        faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        if encoding == "sq8"
        else faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    )
    rng = np.random.default_rng(0)
    ivf.train(vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)])
    ivf.add(vectors)
    ivf.nprobe = nprobe
    return ivf


def encoding_of(index: Any) -> IvfEncoding | None:
    """The encoding of an IVF index's lists; None for anything else."""
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "sq8"
    if isinstance(index, faiss.IndexIVFFlat):
        return "flat"
    return None


def refresh_index(index: Any, old: np.ndarray, new: np.ndarray) -> int:
    """Update ``index`` (ids = rows of ``old``) in place to hold ``new`` (N, D) unit rows.

    Returns the number of rows that changed.
    """
    if old.shape != new.shape or index.ntotal != new.shape[0]:
        raise ValueError(f"index of {index.ntotal} rows cannot follow {old.shape} -> {new.shape}")
    changed = np.flatnonzero(np.any(old != new, axis=1)).astype(np.int64)  # (M,)
    if changed.size:
        index.remove_ids(changed)
        index.add_with_ids(np.ascontiguousarray(new[changed], dtype=np.float32), changed)
    return int(changed.size)


def sampled_recall(
    index: Any,
    vectors: np.ndarray,
    *,
    queries: int = 64,
    k: int = 10,
    candidates: int = RECALL_CANDIDATES,
    seed: int = 0,
) -> float:
    """Recall@k of the served search (``veto.search.nearest``: ``candidates`` from ``index``,
    re-scored exactly) against exact inner-product search over ``vectors`` (N, D), for
    ``queries`` item vectors drawn with ``seed``."""
    n = vectors.shape[0]
    k = min(k, n)
    rows = np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False)
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)  # (Q, D)
    # Blocked exact search: no (Q, N) score matrix (256 MB at 1M items), ~0.2 s at 1M.
    base = np.ascontiguousarray(vectors, dtype=np.float32)
    _, exact = faiss.knn(q, base, k, metric=faiss.METRIC_INNER_PRODUCT)  # (Q, k)
    _, found = nearest(index, base, q, max(k, candidates))  # (Q, M)
    found = found[:, :k]  # (Q, k)
    hits = sum(len(set(e.tolist()) & set(f.tolist())) for e, f in zip(exact, found, strict=True))
    return hits / (len(rows) * k)


@dataclass
class IndexPlan:
    """When to train a new IVF index: its recall fell below ``min_ratio`` x ``baseline``
    (the recall measured right after it was trained, or when it was loaded)."""

    baseline: float
    min_ratio: float

    def due(self, recall: float) -> bool:
        return recall < self.min_ratio * self.baseline


@dataclass(frozen=True)
class IndexUpdate:
    """The index for a new version, and what maintaining it measured."""

    index: Any
    recall: float | None  # IVF: sampled recall@10 against exact search; flat: None
    retrained: bool


class IndexKeeper:
    """The index of the version being fine-tuned, carried to the next one.

    Flat: rebuilt from the new vectors (exact, cheap). IVF: the rows a round moved are
    updated in place, and a new index is trained when the sampled recall falls below
    ``min_ratio`` of the recall it had when trained (or loaded), or when its lists hold
    another ``encoding`` than the one asked for (an IVFFlat version of an older trainer
    becomes SQ8 in the next version).
    """

    def __init__(
        self,
        index: Any,
        vectors: np.ndarray,
        *,
        flat_max_items: int,
        nprobe: int,
        min_ratio: float,
        encoding: IvfEncoding = "sq8",
    ) -> None:
        self.flat_max_items = flat_max_items
        self.nprobe = nprobe
        self.encoding: IvfEncoding = encoding
        self.min_ratio = min_ratio
        self.index = index  # None: a flat version (the service searches its vectors)
        self.plan: IndexPlan | None = None
        self.migrate = False
        if index is not None and faiss.try_extract_index_ivf(index) is not None:
            self.migrate = encoding_of(index) != encoding
            baseline = 0.0 if self.migrate else sampled_recall(index, vectors)
            self.plan = IndexPlan(baseline=baseline, min_ratio=min_ratio)

    def _build(self, vectors: np.ndarray) -> Any:
        return build_index(
            vectors, flat_max_items=self.flat_max_items, nprobe=self.nprobe, encoding=self.encoding
        )

    def grow(self, vectors: np.ndarray, first_row: int) -> None:
        """Add rows ``first_row``.. (items appended to the catalog, unit ``vectors`` (K, D))
        to an IVF index under their ids: the next ``update`` then moves only the rows the
        round touched, as always. A flat index (or one about to be rebuilt) needs nothing:
        ``update`` builds it from all the vectors."""
        if self.plan is None or self.migrate or not len(vectors):
            return
        ids = np.arange(first_row, first_row + len(vectors), dtype=np.int64)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def update(self, old: np.ndarray, new: np.ndarray) -> IndexUpdate:
        """The index over ``new`` (N, D) unit rows, following ``old``."""
        if self.plan is None:
            self.index = self._build(new)
            if faiss.try_extract_index_ivf(self.index) is None:
                return IndexUpdate(self.index, None, retrained=False)
            # The catalog grew past flat_max_items: keep this IVF index from now on.
            recall = sampled_recall(self.index, new)
            self.plan = IndexPlan(baseline=recall, min_ratio=self.min_ratio)
            return IndexUpdate(self.index, recall, retrained=True)
        if self.migrate:
            log.info(
                "IVF lists hold %s codes, not %s: training a new index",
                encoding_of(self.index),
                self.encoding,
            )
            self.migrate = False
        else:
            refresh_index(self.index, old, new)
            recall = sampled_recall(self.index, new)
            if not self.plan.due(recall):
                return IndexUpdate(self.index, recall, retrained=False)
            log.info(
                "IVF recall@10 %.3f fell below %.2f x %.3f: training a new index",
                recall,
                self.plan.min_ratio,
                self.plan.baseline,
            )
        self.index = self._build(new)
        recall = sampled_recall(self.index, new)
        self.plan.baseline = recall
        return IndexUpdate(self.index, recall, retrained=True)
