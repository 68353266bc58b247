"""Nearest items by inner product over one version's item vectors, with the vectors held once.

    flat catalogs  no FAISS index in memory: an exact search over the (memory-mapped) item
                   vectors themselves (``faiss.knn``, the same kernel as IndexFlatIP)
    IVF, SQ8       the index proposes candidates from 8-bit codes (a quarter of the float
                   vectors' size); they are re-scored exactly with the float vectors
    IVF, flat      (versions written before SQ8) the index's scores are already exact

The service and the trainer's recall check both call ``nearest``, so the recall the trainer
measures is the recall of what the service serves. Legend: Q queries, D dim, N items,
M candidates; FAISS's ``-1`` ids (no result) come back with score -inf.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def exact_scores(index: Any) -> bool:
    """Whether ``index`` (None = search the vectors) scores candidates exactly."""
    return index is None or isinstance(index, faiss.IndexFlat | faiss.IndexIVFFlat)


def nearest(index: Any, vectors: F32, queries: F32, m: int) -> tuple[F32, I64]:
    """Up to ``m`` candidate rows per query, best first: scores, ids (Q, m) each.

    ``index`` is None for a flat catalog (exact search over ``vectors`` (N, D)) or a FAISS
    inner-product index over them (ids = rows); a compressed index's candidates are
    re-scored exactly with ``vectors`` and re-sorted.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)  # (Q, D)
    m = max(1, min(m, int(vectors.shape[0])))
    if index is None:
        scores, ids = faiss.knn(queries, vectors, m, metric=faiss.METRIC_INNER_PRODUCT)
        return _mark_missing(scores, ids)
    scores, ids = index.search(queries, m)  # (Q, m) each
    if exact_scores(index):
        return _mark_missing(scores, ids)
    rows = np.maximum(ids, 0)  # (Q, m): -1 slots gather row 0, masked below
    found = np.asarray(vectors[rows.ravel()]).reshape(*rows.shape, -1)  # (Q, m, D)
    rescored = np.einsum("qmd,qd->qm", found, queries).astype(np.float32)  # (Q, m)
    rescored[ids < 0] = -np.inf
    order = np.argsort(-rescored, axis=1, kind="stable")  # (Q, m)
    return (
        np.take_along_axis(rescored, order, axis=1),
        np.take_along_axis(ids, order, axis=1).astype(np.int64),
    )


def _mark_missing(scores: F32, ids: I64) -> tuple[F32, I64]:
    scores = scores.astype(np.float32, copy=False)
    scores[ids < 0] = -np.inf
    return scores, ids.astype(np.int64, copy=False)
