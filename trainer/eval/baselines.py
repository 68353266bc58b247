"""A reference point for the metrics: most-liked items of the training half, the user's own
training items masked — ranked and scored by the same code as the trained models.

Legend: B users in a batch, N items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from trainer.eval.metrics import KS, ranking_metrics, top_k
from trainer.eval.users import EvalUsers, Pairs
from veto.events import EventType, Interaction

F32 = npt.NDArray[np.float32]


def like_counts(train: Sequence[Interaction], item_index: dict[str, int]) -> F32:
    """(N,) likes per item in the training half."""
    rows = np.fromiter(
        (item_index[x.item_id] for x in train if x.type == EventType.LIKE), dtype=np.int64
    )
    out: F32 = np.bincount(rows, minlength=len(item_index)).astype(np.float32)
    return out


def popularity_metrics(
    train: Sequence[Interaction],
    users: EvalUsers,
    *,
    item_index: dict[str, int],
    ks: Sequence[int] = KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Recall, NDCG, Dislike and coverage at each K of the most-liked ranking."""
    counts = like_counts(train, item_index)[:, None]  # (N, 1): a one-dimensional "item vector"
    n_users, k = len(users.user_ids), min(max(ks), len(item_index))
    top = np.empty((n_users, k), dtype=np.int64)
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        keep = (users.seen.rows >= start) & (users.seen.rows < stop)
        mask = Pairs(users.seen.rows[keep] - start, users.seen.items[keep])
        states = np.ones((stop - start, 1), dtype=np.float32)  # (B, 1)
        top[start:stop] = top_k(states, counts, mask=mask, k=k)
    return ranking_metrics(
        top, likes=users.likes, dislikes=users.dislikes, n_items=len(item_index), ks=ks
    )
