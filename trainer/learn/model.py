"""The torch model: an item embedding table and the user tower of ``veto.encoder``.

Legend: B batch, L history length, D dim, T event types, N items, U known users.

The item representation everywhere is the L2-normalised embedding row. The user tower
computes exactly ``veto.encoder.UserEncoder.encode_batch`` (its docstring has the formula);
``tests/trainer/test_parity.py`` pins the two together. Embedding tables produce sparse
gradients (updated by row-wise Adagrad); the small dense tower is trained with Adam.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES, EventType

_EPS = 1e-12
DISLIKE = int(EventType.DISLIKE)
# An encoder without the channel (weight 0) restarts it just off zero: softplus's inverse at
# 0 is -inf, and a weight of exactly 0 would leave the channel without gradient.
DISLIKE_FLOOR = 1e-2


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def _inverse_softplus_t(y: Tensor) -> Tensor:
    return torch.log(torch.expm1(y))


class _UnitRows(torch.autograd.Function):
    """y = x / max(‖x‖, eps) per row, with a fused backward (no division in either pass)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        inv = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(_EPS).reciprocal_()
        y: Tensor = x * inv
        ctx.save_for_backward(y, inv)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        y, inv = ctx.saved_tensors
        # d/dx (x / |x|) applied to g: (g - y (g · y)) / |x|
        dot = (grad * y).sum(dim=-1, keepdim=True)
        out: Tensor = (grad - y * dot).mul_(inv)
        return out


def unit_rows(x: Tensor) -> Tensor:
    """L2-normalised rows (..., D), as the service's unit item vectors."""
    out: Tensor = _UnitRows.apply(x)  # type: ignore[no-untyped-call]
    return out


class VetoModel(nn.Module):
    """Item embeddings + user tower; ``user_emb`` exists only with per-user embeddings."""

    TOWER = ("gate", "bias", "pos_logits", "type_logits", "proj_w", "proj_b")

    def __init__(
        self,
        *,
        n_items: int,
        n_users: int,
        dim: int,
        history_len: int,
        dislike_channel: bool = True,
    ) -> None:
        super().__init__()
        self.dislike_channel = dislike_channel
        # Zeros: ``trainer.learn.fit`` fills it (random or warm start), once: it is the one large
        # table (N, D).
        self.item_emb = nn.Embedding(n_items, dim, sparse=True, _weight=torch.zeros(n_items, dim))
        self.user_emb = nn.Embedding(max(n_users, 1), dim, sparse=True)
        self.n_users = n_users
        self.gate = nn.Parameter(torch.ones(N_EVENT_TYPES, dim))
        self.bias = nn.Parameter(torch.zeros(N_EVENT_TYPES, dim))
        self.pos_logits = nn.Parameter(torch.zeros(history_len))
        self.type_logits = nn.Parameter(torch.zeros(N_EVENT_TYPES))
        self.proj_w = nn.Parameter(torch.eye(dim))
        self.proj_b = nn.Parameter(torch.zeros(dim))
        # The dislike channel's weight is -softplus(dislike_raw): never positive, so it can
        # only push the state away from what the user disliked (veto.encoder).
        self.dislike_raw = nn.Parameter(torch.full((dim,), _inverse_softplus(DISLIKE_FLOOR)))
        nn.init.zeros_(self.user_emb.weight)

    def dislike_weight(self) -> Tensor:
        """(D,) the dislike channel's weight, <= 0 (0 with the channel off)."""
        if not self.dislike_channel:
            return torch.zeros_like(self.dislike_raw)
        return -F.softplus(self.dislike_raw)

    @property
    def dim(self) -> int:
        return int(self.proj_b.shape[0])

    @property
    def history_len(self) -> int:
        return int(self.pos_logits.shape[0])

    def sparse_parameters(self) -> list[Tensor]:
        return [self.item_emb.weight, self.user_emb.weight]

    def dense_parameters(self) -> list[Tensor]:
        tower: list[Tensor] = [self.gate, self.bias, self.pos_logits, self.type_logits]
        tower += [self.proj_w, self.proj_b]
        return [*tower, self.dislike_raw] if self.dislike_channel else tower

    def item_vectors(self, rows: Tensor) -> Tensor:
        """Unit item vectors (..., D) of item rows (...)."""
        return unit_rows(self.item_emb(rows))

    def encode(self, items: Tensor, types: Tensor, user_rows: Tensor | None = None) -> Tensor:
        """User states (B, D), unit rows, from histories newest first.

        items (B, L) item rows, -1 = padding; types (B, L) event types; user_rows (B,) row in
        user_emb or -1 (unknown user).
        """
        length = min(items.shape[1], self.history_len)
        items, types = items[:, :length], types[:, :length]
        valid = items >= 0  # (B, L)
        uniq, inverse = torch.unique(torch.where(valid, items, 0), return_inverse=True)
        return self.encode_rows(self.item_vectors(uniq), inverse, types, valid, user_rows)

    def encode_rows(
        self,
        vectors: Tensor,
        rows: Tensor,
        types: Tensor,
        valid: Tensor,
        user_rows: Tensor | None = None,
    ) -> Tensor:
        """User states (B, D) from histories given as rows of ``vectors``.

        vectors (U, D) unit item vectors; rows (B, L) rows of ``vectors`` (anything where
        invalid); types (B, L); valid (B, L) bool. Training passes the batch's unique items so
        each is normalised once, and pools with embedding_bag: no (B, L, D) tensor is built.
        """
        b, length = rows.shape
        n_types = self.gate.shape[0]
        safe_types = torch.where(valid, types, 0).long()  # (B, L)
        logits = self.pos_logits[:length].unsqueeze(0) + self.type_logits[safe_types]  # (B, L)
        logits = logits.masked_fill(~valid, float("-inf"))
        peak = logits.max(dim=1, keepdim=True).values  # (B, 1)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak)).detach()
        weights = torch.where(valid, torch.exp(logits - peak), torch.zeros_like(logits))
        total = weights.sum(dim=1, keepdim=True)
        weights = weights / torch.where(total > 0, total, torch.ones_like(total))  # (B, L)
        # h = Σ_l a_l (gate[t_l] ⊙ v_l + bias[t_l]) grouped by type:
        # pooled[b, t] = Σ_{l: t_l = t} a_l v_l, one weighted bag per (b, t).
        bag = (torch.arange(b).unsqueeze(1) * n_types + safe_types)[valid]  # (V,)
        order = torch.argsort(bag, stable=True)
        counts = torch.bincount(bag, minlength=b * n_types)  # (B*T,)
        offsets = torch.cumsum(counts, 0) - counts
        pooled = F.embedding_bag(
            rows[valid][order],
            vectors,
            offsets,
            mode="sum",
            per_sample_weights=weights[valid][order],
        ).view(b, n_types, -1)  # (B, T, D)
        type_mass = torch.zeros(b * n_types, dtype=weights.dtype).index_add(
            0, bag, weights[valid]
        )  # (B*T,)
        h = (pooled * self.gate).sum(dim=1) + type_mass.view(b, n_types) @ self.bias  # (B, D)
        u = h @ self.proj_w.T + self.proj_b  # (B, D)
        disliked = valid & (safe_types == DISLIKE)  # (B, L)
        if self.dislike_channel and bool(disliked.any()):
            # Mean disliked vector per row: bags of each row's dislikes (row-major order).
            row_of = torch.arange(b).unsqueeze(1).expand(b, length)[disliked]  # (V',)
            n_dis = torch.bincount(row_of, minlength=b)  # (B,)
            m = F.embedding_bag(
                rows[disliked], vectors, torch.cumsum(n_dis, 0) - n_dis, mode="sum"
            ) / n_dis.clamp_min(1).unsqueeze(1).to(vectors.dtype)  # (B, D)
            u = u + self.dislike_weight() * m
        if user_rows is not None and self.n_users > 0:
            known = (user_rows >= 0).unsqueeze(1)  # (B, 1)
            emb = self.user_emb(torch.where(user_rows >= 0, user_rows, 0))  # (B, D)
            u = u + torch.where(known, emb, torch.zeros_like(emb))
        out: Tensor = u / u.norm(dim=1, keepdim=True).clamp_min(_EPS)
        return out

    @torch.no_grad()
    def resize_users(self, n_users: int) -> None:
        """Grow the per-user table to ``n_users`` rows: known rows kept, new ones zero."""
        old = self.user_emb.weight
        table = nn.Embedding(max(n_users, 1), self.dim, sparse=True)
        nn.init.zeros_(table.weight)
        keep = min(self.n_users, n_users)
        table.weight[:keep] = old[:keep]
        self.user_emb = table
        self.n_users = n_users

    @torch.no_grad()
    def load_encoder(self, encoder: UserEncoder) -> None:
        """Copy NumPy encoder arrays into the tower (warm start or the initial encoder)."""
        if encoder.dim != self.dim or encoder.history_len != self.history_len:
            raise ValueError(
                f"encoder is dim {encoder.dim} / L {encoder.history_len}, "
                f"model is dim {self.dim} / L {self.history_len}"
            )
        for name in self.TOWER:
            getattr(self, name).copy_(torch.from_numpy(np.asarray(getattr(encoder, name))))
        weight = torch.from_numpy(np.asarray(encoder.dislike_w, dtype=np.float32))
        self.dislike_raw.copy_(_inverse_softplus_t((-weight).clamp_min(DISLIKE_FLOOR)))
        if encoder.user_emb.shape[0] and self.n_users:
            if encoder.user_emb.shape[0] != self.n_users:
                raise ValueError("encoder user_emb rows do not match the model's users")
            self.user_emb.weight.copy_(torch.from_numpy(np.asarray(encoder.user_emb)))

    @torch.no_grad()
    def export_encoder(self, user_ids: list[str]) -> UserEncoder:
        """The NumPy encoder the service runs (user_emb empty without per-user embeddings)."""

        def arr(t: Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        users = arr(self.user_emb.weight) if self.n_users else np.zeros((0, self.dim), np.float32)
        return UserEncoder(
            gate=arr(self.gate),
            bias=arr(self.bias),
            pos_logits=arr(self.pos_logits),
            type_logits=arr(self.type_logits),
            proj_w=arr(self.proj_w),
            proj_b=arr(self.proj_b),
            dislike_w=arr(self.dislike_weight()),
            user_emb=users,
            user_index={u: i for i, u in enumerate(user_ids)} if self.n_users else {},
        )

    @torch.no_grad()
    def export_vectors(self) -> np.ndarray:
        """Unit item vectors (N, D) float32."""
        w = self.item_emb.weight
        out = (w / w.norm(dim=1, keepdim=True).clamp_min(_EPS)).cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32)
