"""From a fit to a model version on disk, and back (the warm start of the next round)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.learn.checkpoint import Checkpoint
from trainer.learn.fit import FitResult
from trainer.learn.prior import ItemFeedback
from veto.artifacts import (
    CHECKPOINT,
    ModelVersion,
    Watermark,
    list_versions,
    load_version,
    write_version,
)
from veto.errors import ArtifactError
from veto.events import EventType, Interaction


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
    watermark: Watermark,
    parent: int | None,
    index: Any,
    replay: dict[str, torch.Tensor | int],
    feedback: ItemFeedback,
    cold_rows: Sequence[int] | None = None,
    on_checkpoint_written: Callable[[], None] = lambda: None,
) -> int:
    """Write the next version (atomically, with checkpoint.pt) and return its number.

    ``feedback`` (the per-item like/dislike counts so far) becomes the version's item prior
    and travels in the checkpoint, so the next round continues counting. ``cold_rows``, the
    rows still carrying an untrained cold-start vector, become the version's
    ``cold_items.json`` (the next round's warm start reads them back from it).

    The number is max(existing) + 1; write_version refuses an existing directory, so a
    concurrent writer makes this raise ArtifactError rather than overwrite a version.
    ``on_checkpoint_written`` runs while the temporary directory is half-written (the fault
    tests crash there).
    """
    if result.checkpoint is None:
        raise ArtifactError("a trained model without a checkpoint cannot be written")
    checkpoint = replace(result.checkpoint, replay=replay, item_feedback=feedback.state())
    version = next_version(root)
    last = result.loss_history[-1] if result.loss_history else {}

    def save_checkpoint(path: Path) -> None:
        checkpoint.save(path)
        on_checkpoint_written()

    write_version(
        root,
        version=version,
        parent=parent,
        item_ids=item_ids,
        categories=categories,
        vectors=result.vectors,
        encoder=result.encoder,
        popular=popular,
        loss={**checkpoint.config.to_dict(), "last": dict(last)},
        watermark=watermark,
        index=index,
        item_prior=feedback.prior(),
        cold_rows=cold_rows,
        extra_files={CHECKPOINT: save_checkpoint},
    )
    return version


def load_model(path: Path) -> tuple[ModelVersion, FitResult]:
    """A version and what a warm start needs from it (its checkpoint, None if it has none)."""
    version = load_version(path)
    ckpt_path = path / CHECKPOINT
    checkpoint = Checkpoint.load(ckpt_path) if ckpt_path.exists() else None
    result = FitResult(
        vectors=np.array(version.vectors, dtype=np.float32),  # copied out of the mmap
        encoder=version.encoder,
        loss_history=[],
        checkpoint=checkpoint,
    )
    return version, result
