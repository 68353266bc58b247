"""veto.search: the served item search returns brute force's neighbours with exact scores,
from the vectors alone (flat) or from an index's candidates (IVF, 8-bit or float lists)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from trainer.online.index import build_index
from veto.search import exact_scores, nearest


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("encoding", ["sq8", "flat"])
def test_an_exhaustive_ivf_search_equals_brute_force(encoding: str) -> None:
    vectors, queries = _vectors(1000), _vectors(20, seed=1)
    index = build_index(vectors, flat_max_items=100, nprobe=4, encoding=encoding)  # type: ignore[arg-type]
    faiss.extract_index_ivf(index).nprobe = faiss.extract_index_ivf(index).nlist
    exact_vals, exact_ids = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)

    scores, ids = nearest(index, vectors, queries, 10)

    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_vals, rtol=1e-5)
    assert exact_scores(index) == (encoding == "flat")


def test_a_flat_catalog_is_searched_over_the_vectors_themselves() -> None:
    vectors, queries = _vectors(300), _vectors(3, seed=2)
    scores, ids = nearest(None, vectors, queries, 5)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, ids, 1), rtol=1e-5)
    assert nearest(None, vectors, queries, 10_000)[1].shape == (3, 300)  # at most N


def test_empty_slots_come_back_as_minus_one_with_minus_infinity() -> None:
    vectors = _vectors(400)
    index = build_index(vectors, flat_max_items=100, nprobe=1)
    scores, ids = nearest(index, vectors, vectors[:1], 400)  # one list: fewer than 400 found
    missing = ids[0] < 0
    assert missing.any() and np.isneginf(scores[0][missing]).all()
    assert (np.diff(scores[0][~missing]) <= 0).all()  # best first
