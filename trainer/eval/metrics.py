"""Full-catalog ranking and its metrics, vectorised over users.

Legend: B users in a batch, U evaluated users, N items, D dim, K cut-off, P (user, item) pairs.

Definitions (each a mean over the users it applies to, except Dislike@K and coverage):
- Recall@K  = |top-K ∩ held-out likes| / |held-out likes|, users with ≥ 1 held-out like.
- NDCG@K    = Σ_{hits at rank r} 1/log2(r+2) / Σ_{r < min(K, |likes|)} 1/log2(r+2).
- Dislike@K = (held-out dislikes that appear in their user's top-K) / (all held-out dislikes):
              the share of rejected items the model would still show; lower is better.
- Coverage@K = distinct items in any evaluated user's top-K / N.
- Like-vs-dislike AUC = per user, the share of (held-out like, held-out dislike) pairs scored
              like above dislike (a tie counts 1/2), users with ≥ 1 of each: whether the model
              orders what a user rejected below what they accepted, whatever the recall.
The user's training items are masked (never ranked), as the service drops seen items.
With a ``Serving`` given, every score is first adjusted by ``veto.ranking.adjust_scores`` (the
item prior, the penalty from the user's training dislikes), as the service adjusts its
candidates: the ranking and the held-out scores (AUC) are those of what users get.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainer.eval.users import EvalUsers, Pairs, user_states
from veto.encoder import UserEncoder
from veto.ranking import OFF, Strengths, adjust_scores

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

KS = (10, 20, 50)
AUC = "like_dislike_auc"

# (start, stop) → (B, D) states of evaluated users start..stop-1; a user's score of item i is
# the dot product of its state with row i of the item matrix (cosine for unit rows).
StatesOf = Callable[[int, int], F32]


@dataclass(frozen=True)
class Serving:
    """The serving-time adjustment of a trained model's scores: its item prior, computed on
    the training half, and the strengths of the two mechanisms."""

    prior: F32  # (N,)
    strengths: Strengths = OFF


@dataclass(frozen=True)
class Scored:
    """Every evaluated user's ranking and the raw scores of their held-out items."""

    top: I64  # (U, K) item rows, best first, training items masked
    like_scores: F32  # (P,) score of each pair of ``users.likes``, in its order
    dislike_scores: F32  # (P,) score of each pair of ``users.dislikes``, in its order


def _select_top_k(scores: F32, *, mask: Pairs, k: int) -> I64:
    """(B, k) columns by descending score; masks ``scores`` in place."""
    scores[mask.rows, mask.items] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k) unordered
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    out: I64 = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return out


def top_k(states: F32, item_vectors: F32, *, mask: Pairs, k: int) -> I64:
    """(B, k) item rows by descending cosine; ``mask`` rows index the batch."""
    return _select_top_k(states @ item_vectors.T, mask=mask, k=k)


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


def _unique_scored(pairs: Pairs, scores: F32, n_items: int) -> tuple[I64, F32]:
    """Rows and scores of the distinct pairs (a pair held out twice is one target)."""
    _, first = np.unique(pairs.codes(n_items), return_index=True)
    return pairs.rows[first], scores[first]


def like_dislike_auc(
    likes: Pairs, like_scores: F32, dislikes: Pairs, dislike_scores: F32, *, n_items: int
) -> float:
    """Mean over users with ≥ 1 held-out like and dislike of the share of (like, dislike) pairs
    scored like above dislike, ties 1/2; NaN when no user has both."""
    like_rows, l_scores = _unique_scored(likes, like_scores, n_items)
    dis_rows, d_scores = _unique_scored(dislikes, dislike_scores, n_items)
    if not like_rows.size or not dis_rows.size:
        return math.nan
    n_rows = int(max(like_rows.max(), dis_rows.max())) + 1
    n_l = np.bincount(like_rows, minlength=n_rows)  # (U,)
    n_d = np.bincount(dis_rows, minlength=n_rows)
    both = (n_l > 0) & (n_d > 0)
    if not both.any():
        return math.nan
    # Dense ranks of all scores (ties share one), so (row, rank) sorts as (row, score) does.
    _, ranks = np.unique(np.concatenate([l_scores, d_scores]), return_inverse=True)
    ranks = ranks.reshape(-1).astype(np.int64)
    span = np.int64(ranks.max() + 1)
    like_keys = np.sort(like_rows * span + ranks[: like_rows.size])  # (P_like,)
    dis_keys = dis_rows * span + ranks[like_rows.size :]  # (P_dislike,)
    first = np.searchsorted(like_keys, dis_rows * span, side="left")  # the user's likes start
    below = np.searchsorted(like_keys, dis_keys, side="left") - first
    tied = np.searchsorted(like_keys, dis_keys, side="right") - first - below
    above = n_l[dis_rows] - below - tied  # likes of the user scored above this dislike
    right = np.bincount(dis_rows, weights=above + 0.5 * tied, minlength=n_rows)  # (U,)
    return float((right[both] / (n_l[both] * n_d[both])).mean())


def _slice(pairs: Pairs, start: int, stop: int) -> Pairs:
    keep = (pairs.rows >= start) & (pairs.rows < stop)
    return Pairs(pairs.rows[keep] - start, pairs.items[keep])


def _per_user(pairs: Pairs, n_users: int) -> list[I64]:
    """Each user's items of ``pairs``: a list of U arrays."""
    order = np.argsort(pairs.rows, kind="stable")
    bounds = np.searchsorted(pairs.rows[order], np.arange(1, n_users))
    return list(np.split(pairs.items[order], bounds))


def _penalty_sources(users: EvalUsers, serving: Serving) -> list[I64]:
    """Each user's dislike-penalty sources, as the service picks them (veto.ranking)."""
    n_users, window = len(users.user_ids), serving.strengths.penalty_window
    if not window:
        return _per_user(users.disliked, n_users)
    return [rows[:window] for rows in _per_user(users.recent_disliked, n_users)]


def score_users(
    states_of: StatesOf,
    item_vectors: F32,
    users: EvalUsers,
    *,
    k: int,
    batch_size: int = 1024,
    serving: Serving | None = None,
) -> Scored:
    """Rank the catalog for every evaluated user in batches (training items masked), keeping
    the scores of the held-out likes and dislikes; adjusted as served when ``serving``."""
    n_users = len(users.user_ids)
    disliked = _penalty_sources(users, serving) if serving is not None else []
    catalog = np.arange(item_vectors.shape[0], dtype=np.int64)  # (N,) every user's candidates
    top = np.empty((n_users, min(k, item_vectors.shape[0])), dtype=np.int64)
    like_scores = np.empty(users.likes.rows.shape, dtype=np.float32)
    dislike_scores = np.empty(users.dislikes.rows.shape, dtype=np.float32)
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        scores = states_of(start, stop) @ item_vectors.T  # (B, N)
        if serving is not None:
            scores = adjust_scores(
                scores,
                catalog,
                item_vectors=item_vectors,
                prior=serving.prior,
                disliked=disliked[start:stop],
                strengths=serving.strengths,
            )
        for pairs, out in ((users.likes, like_scores), (users.dislikes, dislike_scores)):
            keep = (pairs.rows >= start) & (pairs.rows < stop)
            # Read before masking: held-out items are scored as they are, never masked.
            out[keep] = scores[pairs.rows[keep] - start, pairs.items[keep]]
        top[start:stop] = _select_top_k(scores, mask=_slice(users.seen, start, stop), k=k)
    return Scored(top=top, like_scores=like_scores, dislike_scores=dislike_scores)


def scored_metrics(
    scored: Scored, users: EvalUsers, *, n_items: int, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Recall, NDCG, Dislike and coverage at each K, then the like-vs-dislike AUC."""
    out = ranking_metrics(
        scored.top, likes=users.likes, dislikes=users.dislikes, n_items=n_items, ks=ks
    )
    out[AUC] = like_dislike_auc(
        users.likes, scored.like_scores, users.dislikes, scored.dislike_scores, n_items=n_items
    )
    return out


def _encoder_states(encoder: UserEncoder, item_vectors: F32, users: EvalUsers) -> StatesOf:
    def states_of(start: int, stop: int) -> F32:
        return user_states(
            encoder,
            item_vectors,
            users.hist_items[start:stop],
            users.hist_types[start:stop],
            users.user_ids[start:stop],
        )

    return states_of


def rank_users(
    encoder: UserEncoder,
    item_vectors: F32,
    users: EvalUsers,
    *,
    k: int,
    batch_size: int = 1024,
    serving: Serving | None = None,
) -> I64:
    """(U, k) top items for every evaluated user, training items masked, in user batches."""
    states_of = _encoder_states(encoder, item_vectors, users)
    scored = score_users(
        states_of, item_vectors, users, k=k, batch_size=batch_size, serving=serving
    )
    return scored.top


def evaluate_model(
    encoder: UserEncoder,
    item_vectors: F32,
    users: EvalUsers,
    *,
    ks: Sequence[int] = KS,
    serving: Serving | None = None,
) -> dict[str, float]:
    """Recall, NDCG, Dislike, coverage at each K and the like-vs-dislike AUC of one model,
    ranked as served when ``serving`` is given."""
    states_of = _encoder_states(encoder, item_vectors, users)
    scored = score_users(states_of, item_vectors, users, k=max(ks), serving=serving)
    return scored_metrics(scored, users, n_items=item_vectors.shape[0], ks=ks)
