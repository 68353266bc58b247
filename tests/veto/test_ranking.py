"""veto.ranking: the one score adjustment the service and the evaluation both call, on
hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from veto.events import EventType
from veto.ranking import (
    OFF,
    Strengths,
    adjust_scores,
    dislike_similarity,
    item_prior,
    penalty_sources,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# Items 0..3: 0 and 1 nearly the same direction, 2 orthogonal, 3 opposite to 0.
VECTORS = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0]])
NO_DISLIKES = np.empty(0, dtype=np.int64)


def test_prior_is_log_of_smoothed_like_dislike_ratio() -> None:
    prior = item_prior(np.array([0, 3, 0, 9]), np.array([0, 0, 1, 4]))
    expected = np.log(np.array([1 / 1, 4 / 1, 1 / 2, 10 / 5]))
    np.testing.assert_allclose(prior, expected, rtol=1e-6)
    assert prior.dtype == np.float32


def test_adjustment_follows_the_formula_exactly() -> None:
    scores = np.array([[0.5, 0.4, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)  # (B, M)
    candidates = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.int64)
    prior = np.array([0.2, -0.1, 0.0, 1.0], dtype=np.float32)
    disliked = [np.array([0], dtype=np.int64), np.array([2, 3], dtype=np.int64)]
    strengths = Strengths(prior_weight=0.3, dislike_penalty=0.7)
    got = adjust_scores(
        scores,
        candidates,
        item_vectors=VECTORS,
        prior=prior,
        disliked=disliked,
        strengths=strengths,
    )
    expected = np.empty_like(scores)
    for b in range(2):
        for m in range(4):
            item = candidates[b, m]
            near = max(0.0, max(float(VECTORS[item] @ VECTORS[d]) for d in disliked[b]))
            expected[b, m] = scores[b, m] + 0.3 * prior[item] - 0.7 * near
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_shared_candidates_give_the_same_as_per_user_rows() -> None:
    scores = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    disliked = [np.array([1], dtype=np.int64), NO_DISLIKES, np.array([3, 2], dtype=np.int64)]

    def adjust(candidates: np.ndarray) -> np.ndarray:
        return adjust_scores(
            scores,
            candidates,
            item_vectors=VECTORS,
            prior=np.zeros(4, dtype=np.float32),
            disliked=disliked,
            strengths=Strengths(dislike_penalty=1.0),
        )

    shared = adjust(np.arange(4, dtype=np.int64))
    per_user = adjust(np.tile(np.arange(4, dtype=np.int64), (3, 1)))
    np.testing.assert_allclose(shared, per_user, atol=1e-6)
    np.testing.assert_array_equal(shared[1], scores[1])  # no dislikes, no penalty


def test_no_dislikes_and_no_strengths_leave_scores_unchanged() -> None:
    scores = np.array([[0.5, 0.4, 0.3]], dtype=np.float32)
    candidates = np.array([[0, 1, 2]], dtype=np.int64)
    prior = np.ones(4, dtype=np.float32)
    penalty_only = adjust_scores(
        scores,
        candidates,
        item_vectors=VECTORS,
        prior=prior,
        disliked=[NO_DISLIKES],
        strengths=Strengths(dislike_penalty=5.0),
    )
    np.testing.assert_array_equal(penalty_only, scores)
    off = adjust_scores(
        scores,
        candidates,
        item_vectors=VECTORS,
        prior=prior,
        disliked=[np.array([0], dtype=np.int64)],
        strengths=OFF,
    )
    np.testing.assert_array_equal(off, scores)


def test_a_candidate_identical_to_a_disliked_item_falls_below_the_others() -> None:
    scores = np.array([[0.9, 0.8, 0.7]], dtype=np.float32)  # item 1 ranked 2nd by cosine
    candidates = np.array([[0, 1, 2]], dtype=np.int64)
    disliked = [np.array([1], dtype=np.int64)]
    got = adjust_scores(
        scores,
        candidates,
        item_vectors=_unit([[1, 0, 0], [0, 0, 1], [0, 1, 0]]),
        prior=np.zeros(3, dtype=np.float32),
        disliked=disliked,
        strengths=Strengths(dislike_penalty=0.5),
    )
    assert list(candidates[0][np.argsort(-got[0])]) == [0, 2, 1]


def test_the_prior_orders_equal_cosines_by_like_dislike_ratio() -> None:
    scores = np.full((1, 3), 0.5, dtype=np.float32)
    candidates = np.array([[0, 1, 2]], dtype=np.int64)
    prior = item_prior(np.array([1, 10, 0, 0]), np.array([1, 0, 8, 0]))
    got = adjust_scores(
        scores,
        candidates,
        item_vectors=VECTORS,
        prior=prior,
        disliked=[NO_DISLIKES],
        strengths=Strengths(prior_weight=0.1),
    )
    assert list(candidates[0][np.argsort(-got[0])]) == [1, 0, 2]


def test_faiss_padding_ids_keep_their_score() -> None:
    scores = np.array([[0.5, -3.4e38]], dtype=np.float32)
    got = adjust_scores(
        scores,
        np.array([[0, -1]], dtype=np.int64),
        item_vectors=VECTORS,
        prior=np.ones(4, dtype=np.float32),
        disliked=[np.array([3], dtype=np.int64)],
        strengths=Strengths(prior_weight=1.0, dislike_penalty=1.0),
    )
    assert got[0, 1] == scores[0, 1]


@pytest.mark.parametrize("max_elements", [1, 3, 7, 1 << 25])
def test_chunking_does_not_change_the_similarity(max_elements: int) -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng.normal(size=(30, 5)).tolist())
    disliked = [rng.choice(30, size=n, replace=False).astype(np.int64) for n in (0, 1, 7, 3, 12)]
    got = dislike_similarity(
        vectors, np.arange(30, dtype=np.int64), disliked, max_elements=max_elements
    )
    for b, rows in enumerate(disliked):
        expected = (
            np.maximum(0.0, (vectors @ vectors[rows].T).max(axis=1)) if rows.size else np.zeros(30)
        )
        np.testing.assert_allclose(got[b], expected, atol=1e-6)


def test_per_user_candidates_with_many_dislikes_are_chunked_exactly() -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng.normal(size=(30, 5)).tolist())
    candidates = np.stack([rng.choice(30, size=6, replace=False) for _ in range(3)])
    disliked = [rng.choice(30, size=n, replace=False).astype(np.int64) for n in (0, 11, 4)]
    got = dislike_similarity(vectors, candidates.astype(np.int64), disliked, max_elements=7)
    for b, rows in enumerate(disliked):
        sims = vectors[candidates[b]] @ vectors[rows].T if rows.size else np.zeros((6, 1))
        np.testing.assert_allclose(got[b], np.maximum(0.0, sims.max(axis=1)), atol=1e-6)


def test_penalty_sources_are_the_newest_dislikes_of_the_history() -> None:
    like, dislike = int(EventType.LIKE), int(EventType.DISLIKE)
    items = [7, 3, 9, 4, 8, -1]  # newest first, -1 padding
    types = [dislike, like, dislike, dislike, like, dislike]
    assert penalty_sources(items, types, 2).tolist() == [7, 9]
    assert penalty_sources(items, types, 10).tolist() == [7, 9, 4]  # padding never a source
    assert penalty_sources(items, types, 0).tolist() == []
    assert penalty_sources(np.array(items), np.array(types), 1).tolist() == [7]
    with pytest.raises(ValueError, match="types"):
        penalty_sources(items, types[:3], 2)


def test_mismatched_dislike_lists_are_an_error() -> None:
    with pytest.raises(ValueError, match="dislike lists"):
        adjust_scores(
            np.zeros((2, 3), dtype=np.float32),
            np.arange(3, dtype=np.int64),
            item_vectors=VECTORS,
            prior=np.zeros(4, dtype=np.float32),
            disliked=[NO_DISLIKES],
            strengths=OFF,
        )
