"""Which items count as "similar" in the responsiveness simulation.

Where items have categories, two items are similar when their category sets overlap by a
Jaccard index of at least 0.5 (MovieLens lists several genres per movie: "Comedy|Romance"
and "Comedy" are similar, "Comedy|Romance" and "Drama|Romance|War" are not; sharing any
genre would make most of the catalog similar, and the first listed genre is merely the
alphabetically first). Without categories, the same k-means cluster of item vectors.

Legend: N items, D dim, C clusters, S users, K top-K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


MIN_JACCARD = 0.5
_MAX_MASK_BITS = 62  # category sets as int64 bit masks


@dataclass(frozen=True)
class Similarity:
    """``labels`` (N,): one group per item (same group = similar); with ``masks`` (N,),
    category sets as bit masks, similar = Jaccard >= MIN_JACCARD instead."""

    labels: I64
    masks: I64 | None = None

    def similar(self, items: I64, to: I64) -> npt.NDArray[np.bool_]:
        """(S, K) whether each of ``items`` (S, K) is similar to that row's ``to`` (S,)."""
        if self.masks is None:
            out: npt.NDArray[np.bool_] = self.labels[items] == self.labels[to][:, None]
            return out
        a, b = self.masks[items], self.masks[to][:, None]  # (S, K), (S, 1)
        both = np.bitwise_count(a & b).astype(np.float64)
        either = np.bitwise_count(a | b).astype(np.float64)
        jaccard = np.divide(both, either, out=np.zeros_like(both), where=either > 0)
        similar: npt.NDArray[np.bool_] = jaccard >= MIN_JACCARD
        return similar


def category_masks(categories: Sequence[str | None]) -> I64 | None:
    """(N,) bit mask of each item's categories ("A|B" sets two bits), or None when no item
    has more than one category or there are too many categories for a mask."""
    sets = [
        {c.strip() for c in cat.split("|") if c.strip()} if cat else set() for cat in categories
    ]
    names = sorted(set().union(*sets))
    if not names or len(names) > _MAX_MASK_BITS or all(len(x) <= 1 for x in sets):
        return None
    bit = {name: 1 << i for i, name in enumerate(names)}
    return np.array([sum(bit[c] for c in x) for x in sets], dtype=np.int64)


def similarity_labels(
    categories: Sequence[str | None], vector_sets: Sequence[F32], *, n_clusters: int, seed: int
) -> tuple[Similarity, str]:
    """Similarity and its source ("category" or "kmeans").

    Without categories, the clusters come from the item vectors of every compared model side
    by side (rows concatenated), so no single variant's geometry defines "similar".
    """
    labels = category_labels(categories)
    if labels is not None:
        return Similarity(labels, category_masks(categories)), "category"
    joined = np.concatenate(
        [v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in vector_sets],
        axis=1,
    ).astype(np.float32)  # (N, D·models)
    return Similarity(kmeans_labels(joined, n_clusters=n_clusters, seed=seed)), "kmeans"
