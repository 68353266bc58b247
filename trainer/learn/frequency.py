"""Streaming item-frequency estimation (Yi et al., RecSys 2019, Algorithm 2).

Two arrays over hashed item ids: ``A[h]`` the last step the item was seen, ``B[h]`` the
estimated number of steps between two sightings. At global step t, for each item seen:

    B[h] <- (1 - alpha) B[h] + alpha (t - A[h]),   A[h] <- t,   q = 1 / B[h]

``q`` is then the expected number of times the item appears among one batch's labels. An
item never seen keeps a prior of one sighting every ``prior_interval`` steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

_KNUTH = 2654435761  # multiplicative hash for bucketed estimates


class FrequencyEstimator:
    """The A/B arrays of one catalog; state is plain tensors (it goes in the checkpoint)."""

    def __init__(self, *, n_items: int, buckets: int, alpha: float, prior_interval: float) -> None:
        self.n_items = n_items
        self.buckets = buckets if buckets > 0 else n_items
        self.alpha = alpha
        self.last_seen = torch.full((self.buckets,), -1.0, dtype=torch.float64)  # A; -1 = never
        self.interval = torch.full((self.buckets,), float(prior_interval), dtype=torch.float64)
        self.step = 0

    def _hash(self, items: Tensor) -> Tensor:
        if self.buckets == self.n_items:
            return items
        return (items * _KNUTH) % self.buckets

    def update(self, items: Tensor) -> None:
        """Record one batch's label items (any shape) and advance the step."""
        self.step += 1
        h = torch.unique(self._hash(items.reshape(-1)))
        t = float(self.step)
        last = self.last_seen[h]
        seen = last >= 0
        gap = torch.where(seen, t - last, self.interval[h])  # first sighting keeps the prior
        self.interval[h] = (1 - self.alpha) * self.interval[h] + self.alpha * gap
        self.last_seen[h] = t

    def expected_count(self, items: Tensor) -> Tensor:
        """q = 1 / B: expected occurrences of each item among one batch's labels."""
        return (1.0 / self.interval[self._hash(items)].clamp_min(1e-6)).to(torch.float32)

    def state_dict(self) -> dict[str, Tensor | int | float]:
        return {
            "last_seen": self.last_seen,
            "interval": self.interval,
            "step": self.step,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state: dict[str, Tensor | int | float]) -> None:
        last, interval = state["last_seen"], state["interval"]
        if not isinstance(last, Tensor) or not isinstance(interval, Tensor):
            raise ValueError("frequency state needs last_seen and interval tensors")
        if last.shape != (self.buckets,) or interval.shape != (self.buckets,):
            raise ValueError("frequency state does not match the number of buckets")
        self.last_seen = last.to(torch.float64).clone()
        self.interval = interval.to(torch.float64).clone()
        self.step = int(state["step"])
