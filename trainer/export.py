"""From a fit to a model version on disk, and back (the warm start of the next round)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.faults import crash_point
from trainer.fit import FitResult
from veto.artifacts import (
    CHECKPOINT,
    ModelVersion,
    Watermark,
    list_versions,
    load_version,
    write_version,
)
from veto.errors import ArtifactError
from veto.events import EventType
from veto.synthetic import Interaction


@dataclass(frozen=True)
class WarmStart:
    """A loaded version and what fine-tuning needs from it."""

    version: ModelVersion
    result: FitResult  # vectors (copied out of the mmap), encoder, checkpoint ({} if none)

    @property
    def number(self) -> int:
        return self.version.version


def popular_items(
    interactions: Sequence[Interaction], item_ids: Sequence[str], n: int
) -> list[str]:
    """The ``n`` most-liked items (ties by catalog order); catalog order if nothing was liked."""
    likes = Counter(x.item_id for x in interactions if x.type == EventType.LIKE)
    order = {item: i for i, item in enumerate(item_ids)}
    ranked = sorted((i for i in likes if i in order), key=lambda i: (-likes[i], order[i]))
    if len(ranked) < n:
        chosen = set(ranked)
        ranked += [i for i in item_ids[: n + len(chosen)] if i not in chosen]
    return ranked[:n]


def next_version(root: Path) -> int:
    """One more than the newest version on disk (1 on an empty root)."""
    versions = list_versions(root)
    return versions[-1] + 1 if versions else 1


def write_model(
    root: Path,
    *,
    result: FitResult,
    item_ids: Sequence[str],
    categories: Sequence[str | None],
    popular: Sequence[str],
    config: TrainConfig,
    watermark: Watermark,
    parent: int | None,
    extra_checkpoint: Mapping[str, Any] | None = None,
    flat_max_items: int,
    nprobe: int,
    index: Any | None = None,
) -> int:
    """Write the next version (atomically, with checkpoint.pt) and return its number.

    The number is max(existing) + 1; write_version refuses an existing directory, so a
    concurrent writer makes this raise ArtifactError rather than overwrite a version.
    """
    version = next_version(root)
    checkpoint = {**result.checkpoint, **(extra_checkpoint or {})}
    last = result.loss_history[-1] if result.loss_history else {}
    write_version(
        root,
        version=version,
        parent=parent,
        item_ids=item_ids,
        categories=categories,
        vectors=result.vectors,
        encoder=result.encoder,
        popular=popular,
        loss={**config.to_dict(), "last": dict(last)},
        watermark=watermark,
        flat_max_items=flat_max_items,
        nprobe=nprobe,
        extra_files={CHECKPOINT: lambda path: _save_checkpoint(checkpoint, path)},
        index=index,
    )
    return version


def _save_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> None:
    torch.save(dict(checkpoint), path)
    crash_point("mid_export")  # the temp dir holds files but is not renamed yet


def load_warm_start(path: Path) -> WarmStart:
    """Load a version and its checkpoint (an empty one if the version has none)."""
    version = load_version(path)
    checkpoint: dict[str, Any] = {}
    ckpt_path = path / CHECKPOINT
    if ckpt_path.exists():
        try:
            checkpoint = torch.load(ckpt_path, weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as exc:
            raise ArtifactError(f"cannot read {ckpt_path}: {exc}") from exc
    result = FitResult(
        vectors=np.array(version.vectors, dtype=np.float32),
        encoder=version.encoder,
        loss_history=[],
        checkpoint=checkpoint,
    )
    return WarmStart(version=version, result=result)
