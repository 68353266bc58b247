"""Per-item like and dislike counts: the source of the item prior the ranking core adds
(``veto.ranking.item_prior``, written as ``item_prior.npy`` in each version).

Exact counts over the training data (``veto bootstrap``, ``veto eval``'s training half); the
online trainer adds each round's events. The counts travel in the checkpoint (``state``), so
a restart continues them; a checkpoint without them (written before they existed) starts
from zero, which is the all-zero prior such a version was served with.

Legend: N items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from veto.events import EventType, FeedbackEvent, Interaction
from veto.ranking import F32, item_prior

I64 = npt.NDArray[np.int64]


@dataclass
class ItemFeedback:
    """Likes and dislikes per item row; mutable, ``add`` counts more events."""

    likes: I64  # (N,)
    dislikes: I64  # (N,)

    @classmethod
    def empty(cls, n_items: int) -> ItemFeedback:
        return cls(np.zeros(n_items, dtype=np.int64), np.zeros(n_items, dtype=np.int64))

    @classmethod
    def count(
        cls, events: Iterable[Interaction | FeedbackEvent], item_index: Mapping[str, int]
    ) -> ItemFeedback:
        """The counts of ``events`` (items outside ``item_index`` are skipped)."""
        out = cls.empty(len(item_index))
        out.add(events, item_index)
        return out

    def add(
        self, events: Iterable[Interaction | FeedbackEvent], item_index: Mapping[str, int]
    ) -> None:
        """Count each like and dislike of ``events``; other types do not move the prior."""
        likes: list[int] = []
        dislikes: list[int] = []
        for e in events:
            row = item_index.get(e.item_id)
            if row is None:
                continue
            if e.type == EventType.LIKE:
                likes.append(row)
            elif e.type == EventType.DISLIKE:
                dislikes.append(row)
        n = self.likes.shape[0]
        self.likes += np.bincount(np.asarray(likes, dtype=np.int64), minlength=n)
        self.dislikes += np.bincount(np.asarray(dislikes, dtype=np.int64), minlength=n)

    def grow(self, n_items: int) -> None:
        """Zero counts for items appended to the catalog (a zero prior: neutral)."""
        extra = max(0, n_items - self.likes.shape[0])
        self.likes = np.concatenate([self.likes, np.zeros(extra, dtype=np.int64)])
        self.dislikes = np.concatenate([self.dislikes, np.zeros(extra, dtype=np.int64)])

    def prior(self) -> F32:
        """(N,) the item prior of these counts."""
        return item_prior(self.likes, self.dislikes)

    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors for the checkpoint."""
        return {
            "likes": torch.from_numpy(self.likes.copy()),
            "dislikes": torch.from_numpy(self.dislikes.copy()),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object], *, n_items: int) -> ItemFeedback:
        """Counts from ``state()``; zeros when missing or of another catalog size."""
        likes, dislikes = state.get("likes"), state.get("dislikes")
        if not isinstance(likes, torch.Tensor) or not isinstance(dislikes, torch.Tensor):
            return cls.empty(n_items)
        if likes.shape != (n_items,) or dislikes.shape != (n_items,):
            return cls.empty(n_items)
        return cls(
            likes.numpy().astype(np.int64, copy=True),
            dislikes.numpy().astype(np.int64, copy=True),
        )
