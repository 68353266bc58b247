"""Row-wise Adagrad for the embedding tables (as in DLRM / torchrec): one accumulator per
row instead of per coordinate, so its state is (N,) rather than (N, D) and a checkpoint of a
million-item catalog stays small. Only the rows a step touched are read and written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class RowWiseAdagrad(torch.optim.Optimizer):
    """For each touched row r with gradient g (D,): G_r += mean(g²); w_r -= lr g / (√G_r + eps)."""

    def __init__(self, params: Iterable[Tensor], *, lr: float, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """Apply one update from the (sparse or dense) gradients."""
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()  # (R,), (R, D)
                else:
                    rows = torch.nonzero(grad.abs().sum(dim=1) > 0).squeeze(1)
                    values = grad[rows]
                mean_sq = torch.linalg.vector_norm(values, dim=1).square_() / values.shape[1]
                acc = state["sum"].index_add_(0, rows, mean_sq)[rows]  # (R,)
                p.index_add_(0, rows, values * (-lr / (acc.sqrt() + eps)).unsqueeze(1))
