"""Full-catalog ranking and its metrics, vectorised over users.

Legend: B users in a batch, U evaluated users, N items, D dim, K cut-off.

Definitions (each a mean over the users it applies to, except Dislike@K and coverage):
- Recall@K  = |top-K ∩ held-out likes| / |held-out likes|, users with ≥ 1 held-out like.
- NDCG@K    = Σ_{hits at rank r} 1/log2(r+2) / Σ_{r < min(K, |likes|)} 1/log2(r+2).
- Dislike@K = (held-out dislikes that appear in their user's top-K) / (all held-out dislikes):
              the share of rejected items the model would still show; lower is better.
- Coverage@K = distinct items in any evaluated user's top-K / N.
The user's training items are masked (never ranked), as the service drops seen items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from trainer.eval.users import EvalUsers, Pairs, user_states
from veto.encoder import UserEncoder

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

KS = (10, 20, 50)


def top_k(states: F32, item_vectors: F32, *, mask: Pairs, k: int) -> I64:
    """(B, k) item rows by descending cosine; ``mask`` rows index the batch."""
    scores = states @ item_vectors.T  # (B, N)
    scores[mask.rows, mask.items] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k) unordered
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    out: I64 = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return out


def _hits(top: I64, targets: Pairs, n_items: int) -> npt.NDArray[np.bool_]:
    """(U, K) True where the ranked item is one of that user's targets."""
    rows = np.arange(top.shape[0], dtype=np.int64)[:, None]
    codes = rows * np.int64(n_items) + top  # (U, K)
    return np.isin(codes, targets.codes(n_items))


def _unique(pairs: Pairs, n_items: int) -> Pairs:
    codes = np.unique(pairs.codes(n_items))
    return Pairs(codes // n_items, codes % n_items)


def ranking_metrics(
    top: I64, *, likes: Pairs, dislikes: Pairs, n_items: int, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Metrics at each K from the (U, max K) ranked lists; keys like ``recall@20``."""
    likes, dislikes = _unique(likes, n_items), _unique(dislikes, n_items)
    n_users = top.shape[0]
    n_likes = np.bincount(likes.rows, minlength=n_users)  # (U,)
    like_hits = _hits(top, likes, n_items)  # (U, Kmax)
    dislike_hits = _hits(top, dislikes, n_items)
    has_likes = n_likes > 0
    discount = 1.0 / np.log2(np.arange(top.shape[1]) + 2.0)  # (Kmax,)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = IDCG with m relevant
    out: dict[str, float] = {}
    for k in ks:
        if k > top.shape[1]:
            raise ValueError(f"K = {k} above the ranked list length {top.shape[1]}")
        hits_k = like_hits[:, :k]
        if has_likes.any():
            recall = hits_k.sum(axis=1)[has_likes] / n_likes[has_likes]
            dcg = (hits_k * discount[:k]).sum(axis=1)[has_likes]
            idcg = ideal[np.minimum(n_likes[has_likes], k)]
            out[f"recall@{k}"] = float(recall.mean())
            out[f"ndcg@{k}"] = float((dcg / idcg).mean())
        else:
            out[f"recall@{k}"] = out[f"ndcg@{k}"] = float("nan")
        total_dislikes = dislikes.rows.shape[0]
        out[f"dislike@{k}"] = (
            float(dislike_hits[:, :k].sum() / total_dislikes) if total_dislikes else float("nan")
        )
        out[f"coverage@{k}"] = float(np.unique(top[:, :k]).shape[0] / n_items)
    return out


def _slice(pairs: Pairs, start: int, stop: int) -> Pairs:
    keep = (pairs.rows >= start) & (pairs.rows < stop)
    return Pairs(pairs.rows[keep] - start, pairs.items[keep])


def rank_users(
    encoder: UserEncoder, item_vectors: F32, users: EvalUsers, *, k: int, batch_size: int = 1024
) -> I64:
    """(U, k) top items for every evaluated user, training items masked, in user batches."""
    out = np.empty((len(users.user_ids), min(k, item_vectors.shape[0])), dtype=np.int64)
    for start in range(0, len(users.user_ids), batch_size):
        stop = min(start + batch_size, len(users.user_ids))
        states = user_states(
            encoder,
            item_vectors,
            users.hist_items[start:stop],
            users.hist_types[start:stop],
            users.user_ids[start:stop],
        )
        out[start:stop] = top_k(states, item_vectors, mask=_slice(users.seen, start, stop), k=k)
    return out


def evaluate_model(
    encoder: UserEncoder, item_vectors: F32, users: EvalUsers, *, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Recall, NDCG, Dislike and coverage at each K for one trained model."""
    top = rank_users(encoder, item_vectors, users, k=max(ks))
    return ranking_metrics(
        top, likes=users.likes, dislikes=users.dislikes, n_items=item_vectors.shape[0], ks=ks
    )
