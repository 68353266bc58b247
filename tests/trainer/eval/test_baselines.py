"""trainer.eval.baselines: the most-liked reference, through the same ranking and metrics."""

from __future__ import annotations

import pytest

from trainer.eval.baselines import like_counts, popularity_metrics
from trainer.eval.metrics import AUC
from trainer.eval.users import build_eval_users
from veto.events import EventType, Interaction

LIKE, DISLIKE = EventType.LIKE, EventType.DISLIKE


def test_popularity_ranks_most_liked_first_and_masks_training_items() -> None:
    index = {x: i for i, x in enumerate("abcd")}
    # Likes in train: a ×3, b ×2, c ×1, d ×0 (a dislike does not count).
    train = [
        Interaction("u1", "a", LIKE, 0), Interaction("u2", "a", LIKE, 1),
        Interaction("u3", "a", LIKE, 2), Interaction("u2", "b", LIKE, 3),
        Interaction("u3", "b", LIKE, 4), Interaction("u3", "c", LIKE, 5),
        Interaction("u1", "d", DISLIKE, 6),
    ]  # fmt: skip
    assert like_counts(train, index).tolist() == [3, 2, 1, 0]
    # u1 has seen a and d: its ranking is b, c. u2 has seen a, b: its ranking is c, d.
    test = [Interaction("u1", "c", LIKE, 7), Interaction("u2", "c", DISLIKE, 8)]
    users = build_eval_users(train, test, item_index=index, history_len=1)
    m = popularity_metrics(train, users, item_index=index, ks=(1, 2), batch_size=1)
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0
    assert m["dislike@1"] == 1.0  # u2's top-1 is c, which it disliked
    assert m["coverage@1"] == pytest.approx(2 / 4)


def test_popularity_auc_orders_held_out_items_by_like_count() -> None:
    index = {x: i for i, x in enumerate("abcde")}
    # Likes in train: a ×3, b ×2, c ×1; d and e none.
    train = [
        Interaction("u1", "a", LIKE, 0), Interaction("u2", "a", LIKE, 1),
        Interaction("u3", "a", LIKE, 2), Interaction("u2", "b", LIKE, 3),
        Interaction("u3", "b", LIKE, 4), Interaction("u3", "c", LIKE, 5),
    ]  # fmt: skip
    test = [
        # u1 (saw a): like b (2) against dislikes c (1) and d (0): both right → 1.
        Interaction("u1", "b", LIKE, 6), Interaction("u1", "c", DISLIKE, 7),
        Interaction("u1", "d", DISLIKE, 8),
        # u2 (saw a, b): like d (0) against dislike e (0): a tie → 1/2.
        Interaction("u2", "d", LIKE, 9), Interaction("u2", "e", DISLIKE, 10),
        # u4: a dislike only, left out of the mean.
        Interaction("u4", "a", DISLIKE, 11),
    ]  # fmt: skip
    users = build_eval_users(train, test, item_index=index, history_len=1)
    m = popularity_metrics(train, users, item_index=index, ks=(1,))
    assert m[AUC] == pytest.approx((1.0 + 0.5) / 2)
