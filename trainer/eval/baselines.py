"""A reference point for the metrics: most-liked items of the training half, the user's own
training items masked — ranked and scored by the same code as the trained models.

Legend: B users in a batch, N items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from trainer.eval.metrics import KS, score_users, scored_metrics
from trainer.eval.users import EvalUsers
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
    """Recall, NDCG, Dislike and coverage at each K of the most-liked ranking, and its
    like-vs-dislike AUC (score = like count, the same for every user)."""
    counts = like_counts(train, item_index)[:, None]  # (N, 1): a one-dimensional "item vector"

    def states_of(start: int, stop: int) -> F32:
        return np.ones((stop - start, 1), dtype=np.float32)  # (B, 1)

    scored = score_users(states_of, counts, users, k=max(ks), batch_size=batch_size)
    return scored_metrics(scored, users, n_items=len(item_index), ks=ks)
