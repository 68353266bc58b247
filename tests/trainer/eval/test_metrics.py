"""trainer.eval.metrics: ranking metrics against hand-computed values on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.eval.metrics import (
    AUC,
    Serving,
    evaluate_model,
    like_dislike_auc,
    ranking_metrics,
    score_users,
    top_k,
)
from trainer.eval.users import Pairs, build_eval_users, user_states
from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES, EventType, Interaction
from veto.ranking import Strengths, adjust_scores


def _pairs(rows: list[int], items: list[int]) -> Pairs:
    return Pairs(np.array(rows, dtype=np.int64), np.array(items, dtype=np.int64))


EMPTY = _pairs([], [])


def test_recall_and_ndcg_match_hand_computed_values() -> None:
    # user 0 ranks 3,1,4,0; held-out likes {1, 0}: hits at ranks 1 and 3 (0-based).
    # user 1 ranks 2,0,1,3; held-out like {2}: hit at rank 0.
    top = np.array([[3, 1, 4, 0], [2, 0, 1, 3]], dtype=np.int64)
    likes = _pairs([0, 0, 1], [1, 0, 2])
    m = ranking_metrics(top, likes=likes, dislikes=EMPTY, n_items=5, ks=(2, 4))
    assert m["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["recall@4"] == pytest.approx(1.0)
    ndcg_u0_k2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg_u0_k4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["ndcg@2"] == pytest.approx((ndcg_u0_k2 + 1.0) / 2)
    assert m["ndcg@4"] == pytest.approx((ndcg_u0_k4 + 1.0) / 2)
    assert math.isnan(m["dislike@2"])  # no held-out dislike to count


def test_dislike_at_k_is_the_share_of_held_out_dislikes_shown() -> None:
    top = np.array([[0, 1, 2], [3, 4, 0]], dtype=np.int64)
    # Three held-out dislikes: user 0 item 1 (rank 1), user 1 item 0 (rank 2), user 1 item 2.
    dislikes = _pairs([0, 1, 1], [1, 0, 2])
    m = ranking_metrics(top, likes=EMPTY, dislikes=dislikes, n_items=6, ks=(1, 2, 3))
    assert m["dislike@1"] == 0.0
    assert m["dislike@2"] == pytest.approx(1 / 3)
    assert m["dislike@3"] == pytest.approx(2 / 3)
    assert math.isnan(m["recall@1"])


def test_coverage_counts_distinct_recommended_items() -> None:
    top = np.array([[0, 1], [0, 2], [0, 1]], dtype=np.int64)
    m = ranking_metrics(top, likes=_pairs([0], [1]), dislikes=EMPTY, n_items=10, ks=(1, 2))
    assert m["coverage@1"] == pytest.approx(0.1)
    assert m["coverage@2"] == pytest.approx(0.3)


def test_users_without_held_out_likes_do_not_count_in_recall() -> None:
    top = np.array([[0, 1], [2, 3]], dtype=np.int64)
    m = ranking_metrics(top, likes=_pairs([0], [0]), dislikes=EMPTY, n_items=4, ks=(1,))
    assert m["recall@1"] == 1.0


def test_top_k_orders_by_score_and_masks_training_items() -> None:
    states = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    items = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    top = top_k(states, items, mask=_pairs([0, 1], [0, 2]), k=3)
    assert top.tolist() == [[1, 3, 2], [3, 1, 0]]


def test_evaluate_model_never_ranks_training_items() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"i{i}" for i in range(30)]
    # The user liked item 0 in train; its nearest item is item 0 itself, which must be masked.
    train = [Interaction("u", "i0", EventType.LIKE, 0.0)]
    test = [
        Interaction("u", "i0", EventType.LIKE, 1.0),
        Interaction("u", "i5", EventType.LIKE, 2.0),
    ]
    encoder = UserEncoder.initial(dim=8, history_len=5, n_types=N_EVENT_TYPES)
    users = build_eval_users(
        train, test, item_index={x: i for i, x in enumerate(ids)}, history_len=5
    )
    # Item 0 is in train: its held-out copy is dropped, only item 5 is a target.
    assert users.likes.items.tolist() == [5]
    from trainer.eval.metrics import rank_users

    ranked = rank_users(encoder, vectors, users, k=29)
    assert 0 not in ranked[0]
    m = evaluate_model(encoder, vectors, users, ks=(10, 20))
    rank_of_5 = ranked[0].tolist().index(5)
    assert m["recall@10"] == (1.0 if rank_of_5 < 10 else 0.0)
    assert m["recall@20"] == (1.0 if rank_of_5 < 20 else 0.0)


def test_histories_are_newest_first_and_can_drop_dislikes() -> None:
    ids = ["a", "b", "c"]
    train = [
        Interaction("u", "a", EventType.LIKE, 0.0),
        Interaction("u", "b", EventType.DISLIKE, 1.0),
        Interaction("u", "c", EventType.CLICK, 2.0),
    ]
    test = [Interaction("u", "a", EventType.DISLIKE, 3.0)]
    index = {x: i for i, x in enumerate(ids)}
    users = build_eval_users(train, test, item_index=index, history_len=4)
    assert users.hist_items.tolist() == [[2, 1, 0, -1]]
    assert users.hist_types[0, :3].tolist() == [EventType.CLICK, EventType.DISLIKE, EventType.LIKE]
    dropped = build_eval_users(
        train, test, item_index=index, history_len=4, drop_types=frozenset({EventType.DISLIKE})
    )
    assert dropped.hist_items.tolist() == [[2, 0, -1, -1]]
    # The disliked training item is still masked in the ranking.
    assert sorted(dropped.seen.items.tolist()) == [0, 1, 2]


def test_recent_dislikes_are_the_newest_within_the_history_whatever_is_dropped() -> None:
    ids = ["a", "b", "c", "d", "e"]
    kinds = [EventType.DISLIKE, EventType.LIKE, EventType.DISLIKE, EventType.DISLIKE,
             EventType.LIKE]  # fmt: skip
    train = [
        Interaction("u", x, t, float(i)) for i, (x, t) in enumerate(zip(ids, kinds, strict=True))
    ]
    test = [Interaction("u", "a", EventType.LIKE, 9.0)]
    index = {x: i for i, x in enumerate(ids)}
    users = build_eval_users(
        train, test, item_index=index, history_len=4, drop_types=frozenset({EventType.DISLIKE})
    )
    # The newest 4 events are b..e: a (the oldest dislike) is out of the window.
    assert users.recent_disliked.items.tolist() == [3, 2]
    assert sorted(users.disliked.items.tolist()) == [0, 2, 3]


def test_a_penalty_window_ranks_with_only_the_newest_dislikes() -> None:
    ids = [f"i{n}" for n in range(6)]
    vectors = np.eye(6, dtype=np.float32)
    vectors[4] = (vectors[0] + vectors[3]) / np.sqrt(2)  # near the old dislike i0 only
    train = [
        Interaction("u", "i0", EventType.DISLIKE, 0.0),
        Interaction("u", "i2", EventType.LIKE, 1.0),
        Interaction("u", "i1", EventType.DISLIKE, 2.0),
    ]
    test = [Interaction("u", "i4", EventType.LIKE, 3.0)]
    users = build_eval_users(train, test, item_index={x: i for i, x in enumerate(ids)},
                             history_len=3)  # fmt: skip
    assert users.recent_disliked.items.tolist() == [1, 0]  # newest first
    states = np.ones((1, 6), dtype=np.float32)
    prior = np.zeros(6, dtype=np.float32)
    seen = []
    for window, sources in ((1, [1]), (0, [0, 1]), (5, [1, 0])):
        serving = Serving(prior, Strengths(dislike_penalty=1.0, penalty_window=window))
        got = score_users(lambda a, b: states[a:b], vectors, users, k=3, serving=serving)
        expected = adjust_scores(states @ vectors.T, np.arange(6), item_vectors=vectors,
                                 prior=prior, disliked=[np.array(sources)],
                                 strengths=serving.strengths)  # fmt: skip
        assert got.like_scores.tolist() == pytest.approx([float(expected[0, 4])])
        seen.append(float(got.like_scores[0]))
    # Its score is sqrt(2); the old dislike, once a source, takes its cosine 1/sqrt(2) off.
    assert seen[0] == pytest.approx(np.sqrt(2))
    assert seen[1] == seen[2] == pytest.approx(np.sqrt(2) - 1 / np.sqrt(2))


def _auc(like_rows: list[int], like_scores: list[float], dis_rows: list[int],
         dis_scores: list[float]) -> float:  # fmt: skip
    """like_dislike_auc with each pair on its own item (items only tell pairs apart)."""
    n = len(like_rows)
    return like_dislike_auc(
        _pairs(like_rows, list(range(n))),
        np.array(like_scores, dtype=np.float32),
        _pairs(dis_rows, list(range(n, n + len(dis_rows)))),
        np.array(dis_scores, dtype=np.float32),
        n_items=n + len(dis_rows),
    )


@pytest.mark.parametrize(
    ("like_scores", "dislike_scores", "expected"),
    [
        ([0.9, 0.8], [0.1, 0.2], 1.0),  # every like above every dislike
        ([0.1, 0.2], [0.9, 0.8], 0.0),  # reversed
        ([0.5, 0.5], [0.5, 0.5], 0.5),  # all tied: each pair counts 1/2
        ([0.9, 0.3], [0.5, 0.3], (1 + 1 + 0 + 0.5) / 4),  # mixed, one tie
    ],
)
def test_like_dislike_auc_on_hand_made_scores(
    like_scores: list[float], dislike_scores: list[float], expected: float
) -> None:
    assert _auc([0, 0], like_scores, [0, 0], dislike_scores) == pytest.approx(expected)


def test_like_dislike_auc_averages_users_with_both_kinds_only() -> None:
    # User 0 perfect, user 1 reversed; user 2 has only a like, user 3 only a dislike.
    auc = _auc([0, 1, 2], [0.9, 0.1, 0.0], [0, 1, 3], [0.1, 0.9, 5.0])
    assert auc == pytest.approx(0.5)
    assert math.isnan(_auc([0], [0.9], [1], [0.1]))  # nobody has both
    assert math.isnan(_auc([], [], [], []))


def test_like_dislike_auc_counts_a_pair_held_out_twice_once() -> None:
    likes = _pairs([0, 0, 0], [1, 1, 2])  # item 1 held out twice, with its one score
    scores = np.array([0.9, 0.9, 0.1], dtype=np.float32)
    auc = like_dislike_auc(likes, scores, _pairs([0], [3]), np.array([0.5], np.float32), n_items=4)
    assert auc == pytest.approx(0.5)  # (1 + 0) / 2, not (1 + 1 + 0) / 3


def test_like_dislike_auc_matches_a_double_loop() -> None:
    rng = np.random.default_rng(1)
    like_rows, dis_rows = rng.integers(0, 6, 40).tolist(), rng.integers(0, 6, 30).tolist()
    # Scores on a coarse grid so that ties happen, within and across users.
    like_scores = (rng.integers(0, 5, 40) / 4).tolist()
    dis_scores = (rng.integers(0, 5, 30) / 4).tolist()
    per_user = []
    for u in range(6):
        ls = [s for r, s in zip(like_rows, like_scores, strict=True) if r == u]
        ds = [s for r, s in zip(dis_rows, dis_scores, strict=True) if r == u]
        if ls and ds:
            right = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in ls for b in ds)
            per_user.append(right / (len(ls) * len(ds)))
    expected = sum(per_user) / len(per_user)
    assert _auc(like_rows, like_scores, dis_rows, dis_scores) == pytest.approx(expected)


def test_evaluate_model_auc_uses_the_cosine_of_state_and_item() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((12, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {f"i{i}": i for i in range(12)}
    train = [Interaction(u, f"i{i}", EventType.LIKE, float(i)) for u in "ab" for i in (0, 1)]
    like, dislike = EventType.LIKE, EventType.DISLIKE
    test = [
        Interaction("a", "i2", like, 10.0), Interaction("a", "i3", like, 11.0),
        Interaction("a", "i4", dislike, 12.0),
        Interaction("b", "i5", like, 13.0), Interaction("b", "i6", dislike, 14.0),
        Interaction("b", "i7", dislike, 15.0),
    ]  # fmt: skip
    encoder = UserEncoder.initial(dim=4, history_len=5, n_types=N_EVENT_TYPES)
    users = build_eval_users(train, test, item_index=index, history_len=5)
    states = user_states(encoder, vectors, users.hist_items, users.hist_types, users.user_ids)
    cosine = states @ vectors.T  # (U, N): unit rows
    per_user = []
    for row, (liked, disliked) in enumerate((([2, 3], [4]), ([5], [6, 7]))):
        pairs = [(cosine[row, i], cosine[row, j]) for i in liked for j in disliked]
        per_user.append(
            sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
        )
    m = evaluate_model(encoder, vectors, users, ks=(1, 2))
    assert m[AUC] == pytest.approx(sum(per_user) / 2)
