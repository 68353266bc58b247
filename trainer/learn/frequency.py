"""How often each item appears among one batch's labels: the logQ correction's ``q``
(Yi et al., RecSys 2019, with copies counted).

Legend: N items, B labels in a batch.

    q_j = B · c_j / T

with ``c_j`` the count of item j among the labels seen and ``T`` the number of labels seen.
A popular item appears several times in one batch (ML-1M's top items 2–5 times per 1024), so
copies are counted: an estimate that counts an item once per batch cannot exceed 1 and
over-penalises exactly the items users like most.

Exact where the training data are at hand: ``seed`` with every example's label, and the
counts stay fixed while training (``fit``: ``veto bootstrap`` and ``veto eval``). Online,
``update`` decays the counts by (1 − alpha) per batch before adding the batch's labels, so
the estimate follows the stream with a memory of about 1/alpha batches, starting from the
counts the bootstrap seeded (they travel in the checkpoint). Before any label: uniform.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor


class FrequencyEstimator:
    """Decayed label counts of one catalog; state is plain tensors (it goes in the checkpoint)."""

    def __init__(self, *, n_items: int, alpha: float) -> None:
        self.n_items = n_items
        self.alpha = alpha
        self.counts = torch.ones(n_items, dtype=torch.float64)  # (N,) uniform prior
        self.total = float(n_items)

    def seed(self, labels: Tensor | npt.NDArray[np.integer]) -> None:
        """Exact counts of ``labels`` (every example's label item row), replacing the rest."""
        rows = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        if rows.numel() == 0:
            return
        self.counts = torch.bincount(rows, minlength=self.n_items).to(torch.float64)
        self.total = float(rows.numel())

    def update(self, labels: Tensor) -> None:
        """Decay, then add one batch's label rows (any shape), each copy counted."""
        rows = labels.reshape(-1).to(torch.int64)
        keep = 1.0 - self.alpha
        self.counts.mul_(keep).index_add_(0, rows, torch.ones(rows.numel(), dtype=torch.float64))
        self.total = self.total * keep + rows.numel()

    def grow(self, n_items: int) -> None:
        """Count rows for items appended to the catalog: zero, never seen as a label."""
        if n_items > self.n_items:
            extra = torch.zeros(n_items - self.n_items, dtype=torch.float64)
            self.counts = torch.cat([self.counts, extra])
            self.n_items = n_items

    def expected_count(self, items: Tensor, batch_size: int) -> Tensor:
        """q: expected copies of each of ``items`` among a batch of ``batch_size`` labels."""
        q = self.counts[items] * (batch_size / max(self.total, 1e-12))
        return q.to(torch.float32)

    def state_dict(self) -> dict[str, Tensor | float]:
        return {"counts": self.counts, "total": self.total, "alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Tensor | float]) -> None:
        """ValueError for another catalog size or an older estimator's state."""
        counts, total = state.get("counts"), state.get("total")
        if not isinstance(counts, Tensor) or not isinstance(total, float | int):
            raise ValueError("frequency state needs counts and total (an older format?)")
        if counts.shape != (self.n_items,):
            raise ValueError("frequency state does not match the number of items")
        self.counts = counts.to(torch.float64).clone()
        self.total = float(total)
