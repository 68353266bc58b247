"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form
item-item model, the second reference row of ``veto eval``, ranked and scored by the same code
as the trained models.

Legend: U users, B users in a batch, N items.

With X the binary (U, N) matrix of training likes and a ridge weight λ::

    G = XᵀX + λI,   P = G⁻¹,   B_ij = −P_ij / P_jj (i ≠ j),   B_jj = 0,   scores(u) = X_u B

λ is chosen on a validation slice of the training half, never on the test half: a seeded
random ``VALIDATION_SHARE`` of each user's training events is held out, EASE is fitted on
the rest for every λ of ``LAMBDAS``, and the λ with the best validation Recall@20 is refitted
on the whole training half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from trainer.eval.metrics import KS, StatesOf, ranking_metrics, score_users, scored_metrics
from trainer.eval.split import random_split
from trainer.eval.users import EvalUsers, build_eval_users
from veto.errors import InvalidInput
from veto.events import EventType, Interaction

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Above this catalog size EASE is skipped: B alone is N² float32 (1.6 GB at 20,000 items) and
# the float64 inverse needs a few times that. Time grows as N³: on MovieLens-1M (3,455 liked
# items) one λ, inverse and validation ranking, takes 3–4 s on 2 shared cores, the whole
# search and refit 40–50 s; near the limit it would take the better part of an hour.
MAX_ITEMS = 20_000
LAMBDAS = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
VALIDATION_SHARE = 0.2
# The validation slice's own RNG stream, not that of the split it is cut from.
VALIDATION_SEED = 20_190_513
SELECTION_METRIC = "recall@20"
_SELECTION_K = 20


@dataclass(frozen=True)
class LikeMatrix:
    """The binary (U, N) matrix X of likes, stored by rows (CSR without values)."""

    user_rows: dict[str, int]
    indptr: I64  # (U + 1,) user r's likes are items[indptr[r]:indptr[r + 1]]
    items: I64  # (nnz,) item rows, user by user
    n_items: int

    @classmethod
    def from_events(
        cls, events: Sequence[Interaction], *, item_index: dict[str, int]
    ) -> LikeMatrix:
        """X of the likes among ``events`` (a repeated like counts once)."""
        user_rows: dict[str, int] = {}
        rows, items = [], []
        for e in events:
            if e.type == EventType.LIKE:
                rows.append(user_rows.setdefault(e.user_id, len(user_rows)))
                items.append(item_index[e.item_id])
        n = np.int64(len(item_index))
        codes = np.unique(np.asarray(rows, dtype=np.int64) * n + np.asarray(items, np.int64))
        counts = np.bincount(codes // n, minlength=len(user_rows))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(user_rows, indptr, (codes % n).astype(np.int64), len(item_index))

    def dense(self, rows: I64) -> F32:
        """(B, N) rows of X; row −1 (a user without likes) is all zeros."""
        known = rows >= 0
        starts = np.where(known, self.indptr[np.where(known, rows, 0)], 0)
        lengths = np.where(known, self.indptr[np.where(known, rows, 0) + 1] - starts, 0)
        batch_rows = np.repeat(np.arange(rows.shape[0]), lengths)
        # Position of each like inside its user's run, then in ``items``.
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out = np.zeros((rows.shape[0], self.n_items), dtype=np.float32)
        out[batch_rows, self.items[np.repeat(starts, lengths) + offsets]] = 1.0
        return out

    def gram(self, *, batch_size: int = 2048) -> F64:
        """(N, N) XᵀX, co-like counts (float32 sums of 0/1 are exact below 2²⁴)."""
        n_users = self.indptr.shape[0] - 1
        out = np.zeros((self.n_items, self.n_items), dtype=np.float32)
        for start in range(0, n_users, batch_size):
            x = self.dense(np.arange(start, min(start + batch_size, n_users)))  # (B, N)
            out += x.T @ x
        return out.astype(np.float64)

    def states_of(self, user_ids: Sequence[str]) -> StatesOf:
        """The rows of X of ``user_ids`` as user states: score = X_u · row of Bᵀ = (X_u B)."""
        rows = np.array([self.user_rows.get(u, -1) for u in user_ids], dtype=np.int64)
        return lambda start, stop: self.dense(rows[start:stop])


def ease_weights(gram: F64, lam: float) -> F32:
    """(N, N) B of EASE from XᵀX: −P / diag(P) column-wise, zero diagonal.

    Only items liked at least once are inverted: an item nobody liked has a zero row and
    column in XᵀX, so its row and column of B are zero whatever the rest (exact, and ~30 %
    less work on MovieLens-1M). The inverse is float64 Cholesky (torch's: numpy has no SPD
    inverse and ``np.linalg.inv`` takes ~2.7 times the flops); G + λI is positive definite.
    """
    n = gram.shape[0]
    active = np.flatnonzero(np.diag(gram) > 0)  # (A,) items with a like
    g = torch.from_numpy(gram[np.ix_(active, active)])  # (A, A) a copy
    g.diagonal().add_(lam)
    p = torch.cholesky_inverse(torch.linalg.cholesky(g)).numpy()  # (A, A) P = G⁻¹
    del g
    p /= -np.diag(p)[None, :]  # column j divided by −P_jj
    np.fill_diagonal(p, 0.0)
    out = np.zeros((n, n), dtype=np.float32)
    out[np.ix_(active, active)] = p
    return out


def skip_reason(n_items: int) -> str | None:
    """Why EASE cannot run on a catalog of ``n_items``, or None when it can."""
    if n_items > MAX_ITEMS:
        return (
            f"catalog of {n_items} items above the EASE limit of {MAX_ITEMS} "
            "(an N×N item-item matrix)"
        )
    return None


@dataclass(frozen=True)
class LambdaChoice:
    """The chosen λ and every λ's validation Recall@20, or why no λ could be chosen."""

    lam: float | None
    validation: dict[float, float] = field(default_factory=dict)
    skipped: str | None = None


def choose_lambda(
    train: Sequence[Interaction],
    *,
    item_index: dict[str, int],
    lambdas: Sequence[float] = LAMBDAS,
    seed: int = VALIDATION_SEED,
) -> LambdaChoice:
    """The λ of the best Recall@20 on a validation slice of ``train`` (the test half is not an
    argument: it cannot be read)."""
    try:
        split = random_split(train, test_share=VALIDATION_SHARE, seed=seed)
    except InvalidInput:
        return LambdaChoice(None, skipped="no user has enough training events for a validation")
    held_likes = [e for e in split.test if e.type == EventType.LIKE]
    # Only users with a validation like count in Recall: ranking the others is wasted work.
    users = build_eval_users(split.train, held_likes, item_index=item_index, history_len=0)
    if not users.likes.rows.size:
        return LambdaChoice(None, skipped="the validation slice holds no like to choose λ by")
    fit = LikeMatrix.from_events(split.train, item_index=item_index)
    gram = fit.gram()
    states_of = fit.states_of(users.user_ids)
    k = min(_SELECTION_K, len(item_index))  # a catalog below 20 items: its whole ranking
    validation: dict[float, float] = {}
    for lam in lambdas:
        weights = ease_weights(gram, lam)
        top = score_users(states_of, weights.T, users, k=k).top  # (U, k)
        validation[lam] = ranking_metrics(
            top, likes=users.likes, dislikes=users.dislikes, n_items=len(item_index), ks=(k,)
        )[f"recall@{k}"]
    best = max(validation, key=lambda lam: validation[lam])  # first of equals: the smallest
    return LambdaChoice(best, validation)


@dataclass(frozen=True)
class EaseOutcome:
    """One split's EASE row: its metrics and λ, or the reason there is none."""

    metrics: dict[str, float] | None
    lam: float | None
    validation: dict[float, float] = field(default_factory=dict)
    skipped: str | None = None


def evaluate_ease(
    train: Sequence[Interaction],
    users: EvalUsers,
    *,
    item_index: dict[str, int],
    ks: Sequence[int] = KS,
    lambdas: Sequence[float] = LAMBDAS,
) -> EaseOutcome:
    """Choose λ on the training half alone, refit on all of it, and score ``users`` on the
    test half with the trained models' metrics (training items masked)."""
    reason = skip_reason(len(item_index))
    if reason is not None:
        return EaseOutcome(None, None, skipped=reason)
    choice = choose_lambda(train, item_index=item_index, lambdas=lambdas)
    if choice.lam is None:
        return EaseOutcome(None, None, choice.validation, skipped=choice.skipped)
    full = LikeMatrix.from_events(train, item_index=item_index)
    weights = ease_weights(full.gram(), choice.lam)
    scored = score_users(full.states_of(users.user_ids), weights.T, users, k=max(ks))
    metrics = scored_metrics(scored, users, n_items=len(item_index), ks=ks)
    return EaseOutcome(metrics, choice.lam, choice.validation)
