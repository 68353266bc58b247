"""Which items count as "similar" in the responsiveness simulation: same category where the
dataset has categories, else the same k-means cluster of item vectors.

Legend: N items, D dim, C clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def primary_category(category: str) -> str:
    """The first of a multi-valued category ("Comedy|Romance" → "Comedy").

    MovieLens lists several genres per movie; sharing any of them would make most of the
    catalog "similar" (Drama and Comedy cover over half of it), so the first one decides.
    """
    return category.split("|", 1)[0].strip()


def category_labels(categories: Sequence[str | None]) -> I64 | None:
    """(N,) integer label per item, or None when no item has a category.

    An item without a category gets a label of its own: it is similar to no other item
    (ML-100K has a few "unknown" movies; one of them must not turn the catalog to k-means).
    """
    primary = [primary_category(c) if c else "" for c in categories]
    named = sorted({c for c in primary if c})
    if not named:
        return None
    codes = {c: i for i, c in enumerate(named)}
    out = np.empty(len(primary), dtype=np.int64)
    next_free = len(named)
    for row, c in enumerate(primary):
        if c:
            out[row] = codes[c]
        else:
            out[row] = next_free
            next_free += 1
    return out


def kmeans_labels(vectors: F32, *, n_clusters: int, seed: int, iterations: int = 30) -> I64:
    """(N,) spherical k-means cluster per item (cosine assignment), seeded, k-means++ start."""
    n = vectors.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"need 1 <= n_clusters <= {n}, got {n_clusters}")
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (N, D)
    rng = np.random.default_rng(seed)
    centres = np.empty((n_clusters, x.shape[1]), dtype=np.float32)  # (C, D)
    centres[0] = x[rng.integers(n)]
    closest = 1.0 - x @ centres[0]  # (N,) cosine distance to the nearest centre so far
    for c in range(1, n_clusters):
        weights = np.maximum(closest, 0.0) ** 2
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres[c] = x[pick]
        closest = np.minimum(closest, 1.0 - x @ centres[c])
    labels = np.argmax(x @ centres.T, axis=1)  # (N,)
    for _ in range(iterations):
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        empty = np.linalg.norm(sums, axis=1) == 0
        sums[empty] = centres[empty]  # an empty cluster keeps its centre
        centres = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
        new = np.argmax(x @ centres.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    out: I64 = labels.astype(np.int64)
    return out


def similarity_labels(
    categories: Sequence[str | None], vector_sets: Sequence[F32], *, n_clusters: int, seed: int
) -> tuple[I64, str]:
    """Labels and their source ("category" or "kmeans").

    Without categories, the clusters come from the item vectors of every compared model side
    by side (rows concatenated), so no single variant's geometry defines "similar".
    """
    labels = category_labels(categories)
    if labels is not None:
        return labels, "category"
    joined = np.concatenate(
        [v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in vector_sets],
        axis=1,
    ).astype(np.float32)  # (N, D·models)
    return kmeans_labels(joined, n_clusters=n_clusters, seed=seed), "kmeans"
