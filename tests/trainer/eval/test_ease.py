"""trainer.eval.ease: the closed form against an independent solve on a hand-made matrix, λ
chosen on the training half alone, and the skip of a catalog too large for an N×N matrix."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.synthetic import make_world
from trainer.eval.ease import (
    LAMBDAS,
    MAX_ITEMS,
    LikeMatrix,
    choose_lambda,
    ease_weights,
    evaluate_ease,
    skip_reason,
)
from trainer.eval.metrics import AUC
from trainer.eval.split import random_split
from trainer.eval.users import build_eval_users
from veto.events import EventType, Interaction

LIKE, DISLIKE = EventType.LIKE, EventType.DISLIKE

# Four users, five items; nobody likes "e", so its row and column of XᵀX are zero.
LIKED = {"u1": "abc", "u2": "ab", "u3": "bcd", "u4": "ad"}
ITEMS = "abcde"


def _closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    """B = −P / diag(P), diag(B) = 0, P = (XᵀX + λI)⁻¹, by a plain float64 solve."""
    n = x.shape[1]
    p = np.linalg.solve(x.T @ x + lam * np.eye(n), np.eye(n))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def _hand_made() -> tuple[list[Interaction], np.ndarray, dict[str, int]]:
    events = [(u, x) for u, liked in LIKED.items() for x in liked]
    train = [Interaction(u, x, LIKE, float(t)) for t, (u, x) in enumerate(events)]
    train += [
        Interaction("u1", "a", LIKE, 50.0),  # a repeated like: X stays binary
        Interaction("u2", "e", DISLIKE, 51.0),  # a dislike is not in X
    ]
    x = np.array([[float(i in LIKED[u]) for i in ITEMS] for u in LIKED])  # (U, N)
    return train, x, {item: i for i, item in enumerate(ITEMS)}


@pytest.mark.parametrize("lam", [0.5, 2.0, 50.0])
def test_ease_weights_equal_the_closed_form(lam: float) -> None:
    train, x, index = _hand_made()
    matrix = LikeMatrix.from_events(train, item_index=index)
    assert matrix.dense(np.arange(len(LIKED))).tolist() == x.tolist()
    assert matrix.gram().tolist() == (x.T @ x).tolist()
    b = ease_weights(matrix.gram(), lam)
    assert b.shape == (len(ITEMS), len(ITEMS))
    assert np.all(np.diag(b) == 0.0)
    np.testing.assert_allclose(b, _closed_form(x, lam), rtol=1e-5, atol=1e-7)
    # A user's scores are X_u B; a user without likes scores every item 0.
    scores = matrix.states_of(["u1", "stranger"])(0, 2) @ b  # (2, N)
    np.testing.assert_allclose(scores[0], x[0] @ _closed_form(x, lam), rtol=1e-5, atol=1e-6)
    assert not scores[1].any()


def test_ease_scores_are_ranked_and_give_the_like_dislike_auc() -> None:
    train, x, index = _hand_made()
    # u4 (liked a, d) holds out a like of b and a dislike of c.
    test = [Interaction("u4", "b", LIKE, 60.0), Interaction("u4", "c", DISLIKE, 61.0)]
    users = build_eval_users(train, test, item_index=index, history_len=0)
    outcome = evaluate_ease(train, users, item_index=index, ks=(1, 3), lambdas=(1.0,))
    # The validation slice holds one event out of each user with three or more (λ = 1 only).
    assert outcome.lam == 1.0 and outcome.metrics is not None
    scores = x[3] @ _closed_form(x, 1.0)  # (N,)
    expected_auc = 1.0 if scores[1] > scores[2] else (0.5 if scores[1] == scores[2] else 0.0)
    assert outcome.metrics[AUC] == expected_auc
    unseen = [i for i in np.argsort(-scores, kind="stable") if i not in (0, 3)]  # a, d masked
    assert outcome.metrics["recall@1"] == float(unseen[0] == 1)


def _world_split() -> tuple[list[Interaction], list[Interaction], dict[str, int]]:
    world = make_world(n_items=60, n_users=80, n_categories=4, dim=8, events_per_user=20, seed=3)
    split = random_split(world.interactions, test_share=0.2, seed=0)
    return split.train, split.test, {item: i for i, item in enumerate(world.item_ids)}


def test_lambda_is_chosen_without_reading_the_test_half() -> None:
    train, test, index = _world_split()
    # The same users with every held-out like turned into a dislike and back: a test half
    # that rewards the opposite ranking.
    flipped_types = {LIKE: DISLIKE, DISLIKE: LIKE}
    flipped = [e._replace(type=flipped_types.get(e.type, e.type)) for e in test]
    outcomes = [
        evaluate_ease(
            train, build_eval_users(train, t, item_index=index, history_len=0), item_index=index
        )
        for t in (test, flipped)
    ]
    assert outcomes[0].lam is not None and outcomes[0].lam == outcomes[1].lam
    assert outcomes[0].validation == outcomes[1].validation
    assert set(outcomes[0].validation) == set(LAMBDAS)
    assert outcomes[0].metrics is not None and outcomes[1].metrics is not None
    assert outcomes[0].metrics["recall@20"] != outcomes[1].metrics["recall@20"]
    # The λ is the standalone choice, which has no test half to read.
    choice = choose_lambda(train, item_index=index)
    assert choice.lam == outcomes[0].lam
    assert choice.validation[choice.lam] == max(choice.validation.values())


def test_too_large_catalog_is_skipped_with_its_reason() -> None:
    n_items = MAX_ITEMS + 1
    index = {f"i{i}": i for i in range(n_items)}
    train = [Interaction("u", "i0", LIKE, 0.0), Interaction("u", "i2", LIKE, 1.0)]
    users = build_eval_users(
        train, [Interaction("u", "i1", LIKE, 2.0)], item_index=index, history_len=0
    )
    outcome = evaluate_ease(train, users, item_index=index)
    assert outcome.metrics is None and outcome.lam is None
    assert outcome.skipped == skip_reason(n_items)
    assert outcome.skipped is not None and f"catalog of {n_items} items" in outcome.skipped
    assert skip_reason(MAX_ITEMS) is None


def test_no_validation_slice_is_a_stated_skip() -> None:
    index = {"a": 0, "b": 1}
    # One event per user: nothing can be held out of the training half.
    train = [Interaction("u1", "a", LIKE, 0.0), Interaction("u2", "b", LIKE, 1.0)]
    users = build_eval_users(
        train, [Interaction("u1", "b", LIKE, 2.0)], item_index=index, history_len=0
    )
    outcome = evaluate_ease(train, users, item_index=index)
    assert outcome.metrics is None
    assert outcome.skipped is not None and "validation" in outcome.skipped
