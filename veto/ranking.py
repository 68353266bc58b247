"""The serving-time score adjustment: one pure function the service and ``veto eval`` both call,
so every offline figure is a figure of what users get.

Legend: B users, M candidates per user, N items, D dim, X disliked items of one user.

    adjusted[b, m] = cos(u_b, i) + prior_weight · prior[i]
                     − dislike_penalty · max(0, max_{d ∈ disliked_b} cos(i, d))

with ``i = candidates[b, m]`` and ``prior[i] = log((likes_i + 1) / (dislikes_i + 1))``
counted on the training data. A user without dislikes gets no penalty. Candidate ``-1``
(FAISS's "no result") keeps its score: the caller drops it.

``disliked_b`` is every item the user disliked, or with ``penalty_window`` W > 0 only the
newest W dislikes among the history the encoder reads (``penalty_sources``): a fresh dislike
pushes its neighbours away, an old one stops costing the items near it.

The service passes one user and the M candidates of a FAISS search (or of a category scan);
the evaluation passes a batch of users and the whole catalog (``candidates`` of shape (N,),
shared). The penalty's similarities are built in blocks of at most ``max_elements`` floats,
so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veto.events import EventType

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

_DISLIKE = int(EventType.DISLIKE)

# 2^25 float32 = 128 MB for the (users, M, X) similarity chunk.
MAX_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class Strengths:
    """How strongly the item prior and the user's dislikes move a score; 0 turns one off."""

    prior_weight: float = 0.0
    dislike_penalty: float = 0.0
    penalty_window: int = 0  # the penalty's sources: the newest W dislikes; 0 = all of them


OFF = Strengths()  # both mechanisms off: the scores are the encoder's cosines


def item_prior(likes: npt.NDArray[np.integer], dislikes: npt.NDArray[np.integer]) -> F32:
    """(N,) ``log((likes + 1) / (dislikes + 1))`` per item: > 0 for items liked more often
    than disliked, 0 for items without feedback."""
    out: F32 = (np.log1p(likes.astype(np.float64)) - np.log1p(dislikes.astype(np.float64))).astype(
        np.float32
    )
    return out


def penalty_sources(items: Sequence[int] | I64, types: Sequence[int] | I64, window: int) -> I64:
    """Rows of the first ``window`` dislikes of a newest-first history (item rows and
    ``EventType`` codes, padding ``-1`` skipped): the penalty's sources under a window."""
    rows = np.asarray(items, dtype=np.int64)
    kinds = np.asarray(types, dtype=np.int64)
    if rows.shape != kinds.shape:
        raise ValueError(f"{rows.shape} item rows for {kinds.shape} types")
    found: I64 = rows[(kinds == _DISLIKE) & (rows >= 0)][:window]
    return found


def _column(disliked: Sequence[I64], users: I64, j: int) -> I64:
    """The j-th disliked row of each of ``users`` (all have more than j)."""
    return np.fromiter((disliked[b][j] for b in users), dtype=np.int64, count=users.size)


def dislike_similarity(
    item_vectors: F32,
    candidates: I64,
    disliked: Sequence[I64],
    *,
    max_elements: int = MAX_ELEMENTS,
) -> F32:
    """(B, M) ``max(0, max_d cos(candidate, d))`` over each user's disliked rows; 0 for a
    user without dislikes. ``candidates`` is (B, M), or (M,) shared by every user."""
    n_cand = candidates.shape[-1]
    out = np.zeros((len(disliked), n_cand), dtype=np.float32)  # (B, M); 0 is the max(0, ·)
    if candidates.ndim == 1:
        # Shared candidates: the j-th dislike of every user who has one, as one (U_j, M)
        # product per j; a reduce over ragged segments instead is several times slower.
        cand_vecs = np.asarray(item_vectors[np.maximum(candidates, 0)], dtype=np.float32)
        counts = np.fromiter((d.size for d in disliked), dtype=np.int64, count=len(disliked))
        by_count = np.argsort(-counts, kind="stable")  # users with most dislikes first
        # Users per product, so a (U_j, M) block stays within max_elements floats.
        step = max(1, max_elements // max(n_cand, 1))
        for j in range(int(counts.max(initial=0))):
            having = by_count[: int(np.count_nonzero(counts > j))]  # (U_j,)
            for lo in range(0, having.size, step):
                users = having[lo : lo + step]
                vecs = np.asarray(item_vectors[_column(disliked, users, j)], dtype=np.float32)
                out[users] = np.maximum(out[users], vecs @ cand_vecs.T)
        return out
    cap = max(1, max_elements // max(n_cand, 1))  # dislike columns per (M, X) block
    for b, rows in enumerate(disliked):
        if not rows.size:
            continue
        vecs = np.asarray(item_vectors[np.maximum(candidates[b], 0)], dtype=np.float32)  # (M, D)
        for lo in range(0, rows.size, cap):
            part = np.asarray(item_vectors[rows[lo : lo + cap]], dtype=np.float32)  # (X', D)
            np.maximum(out[b], (vecs @ part.T).max(axis=1), out=out[b])
    return out


def adjust_scores(
    scores: F32,
    candidates: I64,
    *,
    item_vectors: F32,
    prior: F32,
    disliked: Sequence[I64],
    strengths: Strengths,
    max_elements: int = MAX_ELEMENTS,
) -> F32:
    """(B, M) adjusted scores (the module's formula) of ``scores`` (B, M), the cosines of
    ``candidates`` (B, M) or (M,) shared; ``disliked`` holds each user's disliked rows."""
    if len(disliked) != scores.shape[0]:
        raise ValueError(f"{len(disliked)} dislike lists for {scores.shape[0]} users")
    out = np.array(scores, dtype=np.float32)  # a copy: the caller's scores stay as they were
    valid = candidates >= 0  # (B, M) or (M,)
    rows = np.maximum(candidates, 0)
    if strengths.prior_weight:
        out += np.float32(strengths.prior_weight) * np.where(valid, prior[rows], 0.0).astype(
            np.float32
        )
    if strengths.dislike_penalty and any(d.size for d in disliked):
        near = dislike_similarity(item_vectors, candidates, disliked, max_elements=max_elements)
        out -= np.float32(strengths.dislike_penalty) * np.where(valid, near, 0.0)
    return out
