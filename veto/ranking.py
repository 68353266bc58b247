"""The serving-time score adjustment: one pure function the service and ``veto eval`` both call,
so every offline figure is a figure of what users get.

Legend: B users, M candidates per user, N items, D dim, X disliked items of one user.

    adjusted[b, m] = cos(u_b, i) + prior_weight · prior[i]
                     − dislike_penalty · max(0, max_{d ∈ disliked_b} cos(i, d))

with ``i = candidates[b, m]`` and ``prior[i] = log((likes_i + 1) / (dislikes_i + 1))``
counted on the training data. A user without dislikes gets no penalty. Candidate ``-1``
(FAISS's "no result") keeps its score: the caller drops it.

The service passes one user and the M candidates of a FAISS search (or of a category scan);
the evaluation passes a batch of users and the whole catalog (``candidates`` of shape (N,),
shared). The penalty's similarities (M, X) are built in blocks of at most ``max_elements``
floats (users grouped, a user with very many dislikes split), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# 2^25 float32 = 128 MB for the (users, M, X) similarity chunk.
MAX_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class Strengths:
    """How strongly the item prior and the user's dislikes move a score; 0 turns one off."""

    prior_weight: float = 0.0
    dislike_penalty: float = 0.0


OFF = Strengths()  # both mechanisms off: the scores are the encoder's cosines


def item_prior(likes: npt.NDArray[np.integer], dislikes: npt.NDArray[np.integer]) -> F32:
    """(N,) ``log((likes + 1) / (dislikes + 1))`` per item: > 0 for items liked more often
    than disliked, 0 for items without feedback."""
    out: F32 = (np.log1p(likes.astype(np.float64)) - np.log1p(dislikes.astype(np.float64))).astype(
        np.float32
    )
    return out


def _segments(disliked: Sequence[I64], cap: int) -> list[list[tuple[int, I64]]]:
    """Groups of (user, disliked rows) segments, at most ``cap`` rows per group: a user with
    more than ``cap`` dislikes is split over several segments."""
    groups: list[list[tuple[int, I64]]] = []
    group: list[tuple[int, I64]] = []
    size = 0
    for b, rows in enumerate(disliked):
        for start in range(0, rows.size, cap):
            part = rows[start : start + cap]
            if size + part.size > cap:
                groups.append(group)
                group, size = [], 0
            group.append((b, part))
            size += part.size
    if group:
        groups.append(group)
    return groups


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
    cap = max(1, max_elements // max(n_cand, 1))  # dislike columns per (M, X) block
    shared = candidates.ndim == 1
    if shared:
        cand_vecs = np.asarray(item_vectors[np.maximum(candidates, 0)], dtype=np.float32)  # (M, D)
    for group in _segments(disliked, cap):
        if shared:
            # One product for the whole group, then each segment's max over its columns.
            cols = np.concatenate([rows for _, rows in group])  # (X,)
            sims = cand_vecs @ np.asarray(item_vectors[cols], dtype=np.float32).T  # (M, X)
            starts = np.cumsum([0] + [rows.size for _, rows in group[:-1]])
            best = np.maximum.reduceat(sims, starts, axis=1).T  # (segments, M)
            # A user appears once per group: a segment of ``cap`` rows fills a group alone.
            users = np.fromiter((b for b, _ in group), dtype=np.int64, count=len(group))
            out[users] = np.maximum(out[users], best)
        else:
            for b, rows in group:
                vecs = np.asarray(item_vectors[np.maximum(candidates[b], 0)], dtype=np.float32)
                sims = vecs @ np.asarray(item_vectors[rows], dtype=np.float32).T  # (M, X)
                np.maximum(out[b], sims.max(axis=1), out=out[b])
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
