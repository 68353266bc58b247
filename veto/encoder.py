"""The user encoder in NumPy: what the service runs per request, no torch.

Legend: L history length, D dim, T event types, U known users, N items.

For a history of events j = 0 (newest) .. L'-1 with item vectors v_j (unit norm) and types t_j:

    x_j = gate[t_j] ⊙ v_j + bias[t_j]                       (D,)  dislike as an input feature
    a   = softmax_j(pos_logits[j] + type_logits[t_j])         (L',) attention over the history
    m   = mean of v_j over the disliked events (0 if none)     (D,)  the dislike channel
    u   = W · Σ_j a_j x_j + b + dislike_w ⊙ m
          (+ user_emb[user] if known)                          (D,)
    s   = u / ‖u‖                                              the user state, scored by cosine

The dislike channel is averaged over the dislikes alone, so one dislike among 200 likes
weighs as much as ten dislikes do: attention pooling would dilute it to ~1/|history|. The
trainer keeps ``dislike_w`` ≤ 0 (it can only push away from what was disliked); an encoder
saved without it has none (zeros).

``trainer.learn.model`` computes exactly this in torch; a parity test pins the two together.
An empty history gives ``b`` (+ the user's own embedding): the model's prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ARRAY_NAMES = (
    "gate",
    "bias",
    "pos_logits",
    "type_logits",
    "proj_w",
    "proj_b",
    "dislike_w",
    "user_emb",
)
DISLIKE = 1  # EventType.DISLIKE's code (veto.events): the dislike channel's type
OPTIONAL_ARRAYS = ("dislike_w",)  # absent from encoders written before it existed
_EPS = 1e-12


@dataclass(frozen=True)
class UserEncoder:
    """Immutable encoder arrays; ``user_index`` maps known user ids to rows of ``user_emb``."""

    gate: F32  # (T, D)
    bias: F32  # (T, D)
    pos_logits: F32  # (L,)
    type_logits: F32  # (T,)
    proj_w: F32  # (D, D), applied as W @ h
    proj_b: F32  # (D,)
    dislike_w: F32  # (D,) weight of the mean disliked item vector, <= 0 once trained
    user_emb: F32  # (U, D), U may be 0
    user_index: dict[str, int] = field(default_factory=dict)

    @property
    def history_len(self) -> int:
        return int(self.pos_logits.shape[0])

    @property
    def dim(self) -> int:
        return int(self.proj_b.shape[0])

    def encode_batch(
        self,
        item_vectors: F32,
        items: I64,
        types: I64,
        user_rows: I64 | None = None,
    ) -> F32:
        """User states for a batch.

        item_vectors (N, D) unit rows; items (B, L) item rows, -1 = padding; types (B, L);
        user_rows (B,) row in user_emb or -1. Returns (B, D) unit rows.
        """
        b, length = items.shape
        length = min(length, self.history_len)
        items, types = items[:, :length], types[:, :length]
        valid = items >= 0  # (B, L)
        safe_items = np.where(valid, items, 0)
        safe_types = np.where(valid, types, 0)
        v = item_vectors[safe_items.reshape(-1)].reshape(b, length, -1)  # (B, L, D)
        x = self.gate[safe_types] * v + self.bias[safe_types]  # (B, L, D)
        logits = self.pos_logits[:length][None, :] + self.type_logits[safe_types]  # (B, L)
        logits = np.where(valid, logits, -np.inf)
        peak = np.max(logits, axis=1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        weights = np.where(valid, np.exp(logits - peak), 0.0)  # (B, L)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total > 0, total, 1.0)
        h = np.einsum("bl,bld->bd", weights, x)  # (B, D)
        disliked = valid & (types == DISLIKE)  # (B, L)
        n_disliked = disliked.sum(axis=1, keepdims=True)  # (B, 1)
        m = np.einsum("bl,bld->bd", disliked.astype(np.float32), v) / np.maximum(n_disliked, 1)
        u = h @ self.proj_w.T + self.proj_b + self.dislike_w * m  # (B, D)
        if user_rows is not None and self.user_emb.shape[0] > 0:
            known = user_rows >= 0
            u = u + np.where(known[:, None], self.user_emb[np.where(known, user_rows, 0)], 0.0)
        norm = np.linalg.norm(u, axis=1, keepdims=True)
        out: F32 = (u / np.maximum(norm, _EPS)).astype(np.float32)
        return out

    def encode(
        self, item_vectors: F32, items: list[int], types: list[int], user_id: str | None = None
    ) -> F32:
        """One user state (D,) from a history newest first (item rows and type codes)."""
        out: F32 = self.encode_many(item_vectors, [items], [types], [user_id])[0]
        return out

    def encode_many(
        self,
        item_vectors: F32,
        items: Sequence[Sequence[int]],
        types: Sequence[Sequence[int]],
        user_ids: Sequence[str | None],
    ) -> F32:
        """User states (B, D) of B histories newest first (item rows and type codes, any
        lengths) and user ids (None or unknown: no user embedding): ``encode_batch`` padded."""
        n = max(1, max((len(rows) for rows in items), default=0))
        item_arr = np.full((len(items), n), -1, dtype=np.int64)  # (B, L)
        type_arr = np.zeros((len(items), n), dtype=np.int64)  # (B, L)
        for b, (rows, codes) in enumerate(zip(items, types, strict=True)):
            item_arr[b, : len(rows)] = rows
            type_arr[b, : len(codes)] = codes
        users = np.fromiter(
            (-1 if u is None else self.user_index.get(u, -1) for u in user_ids),
            dtype=np.int64,
            count=len(user_ids),
        )  # (B,)
        return self.encode_batch(item_vectors, item_arr, type_arr, users)

    def save(self, path: Path) -> None:
        """Write the arrays as one .npz (user ids go in the artifact's user_ids.json)."""
        with path.open("wb") as fh:
            np.savez(fh, **{name: getattr(self, name) for name in ARRAY_NAMES})

    @classmethod
    def load(cls, path: Path, user_ids: list[str] | dict[str, int]) -> UserEncoder:
        """The arrays of ``path``; ``user_ids`` in row order, or an already built index."""
        with np.load(path) as data:
            arrays = {
                name: np.ascontiguousarray(data[name], dtype=np.float32)
                for name in ARRAY_NAMES
                if name in data or name not in OPTIONAL_ARRAYS
            }
        dim = arrays["proj_b"].shape[0]
        arrays.setdefault("dislike_w", np.zeros(dim, dtype=np.float32))
        if arrays["user_emb"].shape[0] != len(user_ids):
            raise ValueError("user_emb rows do not match user_ids")
        index = user_ids if isinstance(user_ids, dict) else {u: i for i, u in enumerate(user_ids)}
        return cls(**arrays, user_index=index)

    @classmethod
    def initial(cls, *, dim: int, history_len: int, n_types: int, seed: int = 0) -> UserEncoder:
        """An untrained encoder: mean of liked items minus disliked ones, nearly identity."""
        rng = np.random.default_rng(seed)
        gate = np.ones((n_types, dim), dtype=np.float32)
        gate[1] = -1.0  # EventType.DISLIKE pushes away from the item from the start
        return cls(
            gate=gate,
            bias=np.zeros((n_types, dim), dtype=np.float32),
            pos_logits=np.zeros(history_len, dtype=np.float32),
            type_logits=np.zeros(n_types, dtype=np.float32),
            proj_w=(np.eye(dim) + 0.01 * rng.standard_normal((dim, dim))).astype(np.float32),
            proj_b=(0.01 * rng.standard_normal(dim)).astype(np.float32),
            dislike_w=np.zeros(dim, dtype=np.float32),
            user_emb=np.zeros((0, dim), dtype=np.float32),
        )
