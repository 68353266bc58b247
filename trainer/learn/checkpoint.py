"""The trainer's checkpoint: what a warm start needs beyond a version's serving arrays.

Saved as ``checkpoint.pt`` in a model version (plain tensors and numbers, loadable with
``torch.load(weights_only=True)``). Item rows travel as the version's unit vectors
(``item_vectors.npy``) plus their norms here, so the optimiser state keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trainer.learn.config import TrainConfig
from veto.errors import ArtifactError

FORMAT = 1
TensorState = dict[str, Any]  # an optimiser's or estimator's state_dict()


@dataclass
class Checkpoint:
    """One trained model's optimisation state, aligned with its version's item rows."""

    catalog: str  # sha256 of the item ids in row order: a warm start needs the same rows
    config: TrainConfig
    user_ids: list[str]  # rows of the per-user table
    item_norms: Tensor  # (N,) norms of the raw item embedding rows
    sparse_opt: TensorState  # row-wise Adagrad over [item table, user table]
    dense_opt: TensorState  # Adam over the user tower
    freq: TensorState  # the logQ frequency estimate
    step: int  # optimiser steps taken since the first fit
    replay: dict[str, Tensor | int] = field(default_factory=dict)  # the online replay sample
    # Per-item like/dislike counts behind the version's item prior (trainer.learn.prior);
    # empty in checkpoints written before the prior existed.
    item_feedback: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "catalog": self.catalog,
            "config": self.config.to_dict(),
            "user_ids": list(self.user_ids),
            "item_norms": self.item_norms,
            "sparse_opt": self.sparse_opt,
            "dense_opt": self.dense_opt,
            "freq": self.freq,
            "step": self.step,
            "replay": self.replay,
            "item_feedback": self.item_feedback,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Checkpoint:
        """Inverse of ``to_dict``; ArtifactError when a field is missing or of another format."""
        if raw.get("format") != FORMAT:
            raise ArtifactError(f"checkpoint format {raw.get('format')!r}, expected {FORMAT}")
        try:
            replay = raw.get("replay")
            feedback = raw.get("item_feedback")
            return cls(
                catalog=str(raw["catalog"]),
                config=TrainConfig.from_dict(raw["config"]),
                user_ids=[str(u) for u in raw["user_ids"]],
                item_norms=raw["item_norms"],
                sparse_opt=raw["sparse_opt"],
                dense_opt=raw["dense_opt"],
                freq=raw["freq"],
                step=int(raw["step"]),
                replay=replay if isinstance(replay, dict) else {},
                item_feedback=feedback if isinstance(feedback, dict) else {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"checkpoint is missing or has a bad field: {exc}") from exc

    def save(self, path: Path) -> None:
        torch.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read ``path``; ArtifactError if it cannot be read or is not a checkpoint."""
        try:
            raw = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ArtifactError(f"{path} is not a checkpoint")
        return cls.from_dict(raw)
