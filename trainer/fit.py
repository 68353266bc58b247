"""``fit``: train (or fine-tune) the model on interactions and export NumPy arrays.

Reads top to bottom: examples, model, optimisers, loop, export. Training examples are built
once per call (padded (E, L) history index arrays); a step only gathers rows of them.
Embedding tables get row-wise Adagrad on sparse gradients, the small user tower Adam.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm  # type: ignore[import-untyped]

from trainer.config import TrainConfig
from trainer.examples import Examples, build_examples
from trainer.frequency import FrequencyEstimator
from trainer.model import VetoModel
from trainer.optim import RowWiseAdagrad
from trainer.step import Batch, batch_loss
from veto.encoder import UserEncoder
from veto.errors import ConfigError, UnknownItem
from veto.events import EventType
from veto.synthetic import Interaction

CHECKPOINT_FORMAT = 1


@dataclass
class FitResult:
    """What a fit exports: serving arrays, the loss log and the warm-start checkpoint."""

    vectors: np.ndarray  # (N, D) float32 item vectors, unit rows, aligned with item_ids
    encoder: UserEncoder
    loss_history: list[dict[str, float]]  # one dict per epoch
    checkpoint: dict[str, Any] = field(default_factory=dict)


def catalog_digest(item_ids: Sequence[str]) -> str:
    """A fingerprint of the catalog: warm starts need the same rows in the same order."""
    # Ids cannot contain a newline (veto.ids), so the joined text identifies the list.
    return hashlib.sha256("\n".join(item_ids).encode()).hexdigest()


def known_users(
    interactions: Sequence[Interaction], config: TrainConfig, init: FitResult | None
) -> list[str]:
    """Rows of the per-user table: the warm start's users first, then new ones."""
    if not config.user_embedding:
        return []
    known: list[str] = []
    if init is not None:
        index = init.encoder.user_index
        known = list(init.checkpoint.get("user_ids", sorted(index, key=index.__getitem__)))
    return list(dict.fromkeys([*known, *(x.user_id for x in interactions)]))


def make_examples(
    interactions: Sequence[Interaction],
    *,
    item_index: dict[str, int],
    user_index: dict[str, int],
    config: TrainConfig,
) -> Examples:
    """The objective's examples: dislike labels only where a term uses them."""
    # ssm-neg reads dislikes from the histories even without the dislike input feature.
    dislike_input = config.dislike_input or config.dislike_negatives
    try:
        examples = build_examples(
            interactions,
            item_index=item_index,
            user_index=user_index,
            history_len=config.history_len,
            dislike_input=dislike_input,
            click_weight=config.click_weight,
        )
    except KeyError as exc:
        raise UnknownItem(f"item {exc.args[0]!r} is not in the catalog") from exc
    if not config.uses_ntr:
        keep = np.flatnonzero(examples.kinds != int(EventType.DISLIKE))
        examples = examples.take(keep)
    return examples


_TOWER = ("gate", "bias", "pos_logits", "type_logits", "proj_w", "proj_b")


def _new_model(
    *, n_items: int, user_ids: list[str], config: TrainConfig, random_items: bool = True
) -> VetoModel:
    """A fresh model: random item rows, the near-identity initial encoder, zero user rows."""
    torch.manual_seed(config.seed)
    model = VetoModel(
        n_items=n_items, n_users=len(user_ids), dim=config.dim, history_len=config.history_len
    )
    if random_items:  # a warm start overwrites them: skip a pass over a large table
        with torch.no_grad():
            model.item_emb.weight.normal_(0.0, config.dim**-0.5)
    initial = UserEncoder.initial(
        dim=config.dim, history_len=config.history_len, n_types=len(EventType), seed=config.seed
    )
    model.load_encoder(initial)
    return model


@torch.no_grad()
def _warm_start(model: VetoModel, init: FitResult, user_ids: list[str]) -> None:
    """Copy a previous result into ``model``: item rows (raw scale from the checkpoint's
    norms when present, so the optimiser state stays meaningful), tower, known users' rows."""
    n_items, dim = model.item_emb.weight.shape
    encoder = init.encoder
    if init.vectors.shape != (n_items, dim):
        raise ConfigError(f"warm start has vectors {init.vectors.shape}, expected {(n_items, dim)}")
    if encoder.dim != dim or encoder.history_len != model.history_len:
        raise ConfigError(
            f"warm start encoder is dim {encoder.dim} / L {encoder.history_len}, "
            f"config is dim {dim} / L {model.history_len}"
        )
    vectors = torch.from_numpy(np.asarray(init.vectors, np.float32))  # (N, D)
    norms = init.checkpoint.get("item_norms")
    if isinstance(norms, torch.Tensor) and norms.shape == (n_items,):
        vectors = vectors * norms.unsqueeze(1)
    model.item_emb.weight.copy_(vectors)
    for name in _TOWER:
        getattr(model, name).copy_(torch.from_numpy(np.asarray(getattr(encoder, name))))
    for row, user in enumerate(user_ids):
        old = encoder.user_index.get(user)
        if old is not None and old < encoder.user_emb.shape[0]:
            model.user_emb.weight[row] = torch.from_numpy(encoder.user_emb[old])


def _restore_state(
    checkpoint: dict[str, Any],
    *,
    sparse: torch.optim.Optimizer,
    dense: torch.optim.Optimizer,
    freq: FrequencyEstimator,
    same_users: bool,
) -> int:
    """Load optimiser and frequency state from a checkpoint; returns its step count."""
    if not checkpoint:
        return 0
    if same_users:  # the user table's accumulator has one row per user
        sparse.load_state_dict(checkpoint["sparse_opt"])
    dense.load_state_dict(checkpoint["dense_opt"])
    freq.load_state_dict(checkpoint["freq"])
    return int(checkpoint.get("step", 0))


def _batch(examples: Examples, rows: npt.NDArray[np.int64], weights: torch.Tensor) -> Batch:
    part = examples.take(rows)
    kinds = torch.from_numpy(part.kinds).long()
    # Histories are newest first and padded at the end: drop columns no row uses.
    length = max(1, int((part.items >= 0).sum(axis=1).max(initial=0)))
    return Batch(
        items=torch.from_numpy(part.items[:, :length]).long(),
        types=torch.from_numpy(part.types[:, :length]).long(),
        labels=torch.from_numpy(part.labels).long(),
        kinds=kinds,
        users=torch.from_numpy(part.users).long(),
        weights=weights[kinds],
    )


def _type_weights(config: TrainConfig) -> torch.Tensor:
    """Per label type: like 1, dislike w (NTR), click ``click_weight``, skip 0."""
    w = torch.zeros(len(EventType))
    w[EventType.LIKE] = 1.0
    w[EventType.DISLIKE] = config.ntr_weight
    w[EventType.CLICK] = config.click_weight
    return w


def fit(
    interactions: Sequence[Interaction],
    *,
    item_ids: Sequence[str],
    config: TrainConfig,
    init: FitResult | None = None,
    progress: bool = False,
) -> FitResult:
    """Train on ``interactions`` (oldest first) for ``config.epochs`` epochs.

    Each labelled event is an example: the user's history before it is the input, its item
    the label. ``init`` warm-starts from a previous result (its checkpoint when present, else
    its exported arrays). Raises UnknownItem for an item not in ``item_ids`` and ConfigError
    when ``init`` does not match the catalog or the model size.
    """
    item_index = {item: i for i, item in enumerate(item_ids)}
    if len(item_index) != len(item_ids):
        raise ConfigError("item ids must be unique")
    user_ids = known_users(interactions, config, init)
    examples = make_examples(
        interactions,
        item_index=item_index,
        user_index={u: i for i, u in enumerate(user_ids)},
        config=config,
    )
    return fit_examples(
        examples,
        item_ids=item_ids,
        user_ids=user_ids,
        config=config,
        init=init,
        progress=progress,
    )


def fit_examples(
    examples: Examples,
    *,
    item_ids: Sequence[str],
    user_ids: list[str],
    config: TrainConfig,
    init: FitResult | None = None,
    progress: bool = False,
) -> FitResult:
    """Train on prepared examples (their user rows index ``user_ids``); see ``fit``."""
    torch.set_num_threads(config.threads)
    if not item_ids:
        raise ConfigError("the catalog is empty")
    if len(set(item_ids)) != len(item_ids):
        raise ConfigError("item ids must be unique")
    if examples.history_len != config.history_len and len(examples):
        raise ConfigError(f"examples have L={examples.history_len}, config {config.history_len}")
    digest = catalog_digest(item_ids)
    if init is not None and init.checkpoint.get("catalog", digest) != digest:
        raise ConfigError("the warm start was trained on a different catalog")

    model = _new_model(
        n_items=len(item_ids), user_ids=user_ids, config=config, random_items=init is None
    )
    if init is not None:
        _warm_start(model, init, user_ids)
    sparse = RowWiseAdagrad(model.sparse_parameters(), lr=config.emb_lr)
    dense = torch.optim.Adam(model.dense_parameters(), lr=config.lr)
    freq = FrequencyEstimator(
        n_items=len(item_ids),
        buckets=config.freq_buckets,
        alpha=config.freq_alpha,
        prior_interval=max(1.0, len(item_ids) / config.batch_size),
    )
    same_users = init is not None and list(init.checkpoint.get("user_ids", [])) == user_ids
    step = _restore_state(
        init.checkpoint if init is not None else {},
        sparse=sparse,
        dense=dense,
        freq=freq,
        same_users=same_users,
    )

    rng = np.random.default_rng(config.seed + step)
    generator = torch.Generator().manual_seed(config.seed + step)
    weights = _type_weights(config)
    mask_dislikes = config.dislike_negatives and not config.dislike_input
    history: list[dict[str, float]] = []
    n = len(examples)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    bar = tqdm(
        total=steps_per_epoch * config.epochs, desc="training", unit="step", disable=not progress
    )
    model.train()
    for epoch in range(config.epochs if n else 0):
        started = time.perf_counter()
        order = rng.permutation(n)
        sums = {"total": 0.0, "softmax": 0.0, "ntr": 0.0}
        counts = {"total": 0, "softmax": 0, "ntr": 0}
        for start in range(0, n, config.batch_size):
            batch = _batch(examples, order[start : start + config.batch_size], weights)
            parts = batch_loss(
                model,
                batch,
                config=config,
                freq=freq,
                generator=generator,
                mask_dislike_input=mask_dislikes,
            )
            sparse.zero_grad(set_to_none=True)
            dense.zero_grad(set_to_none=True)
            parts.total.backward()  # type: ignore[no-untyped-call]
            sparse.step()
            dense.step()
            freq.update(batch.labels)
            step += 1
            rows = int(batch.labels.shape[0])
            sums["total"] += float(parts.total.detach()) * rows
            counts["total"] += rows
            if parts.positives:
                sums["softmax"] += parts.softmax * parts.positives
                counts["softmax"] += parts.positives
            if parts.negatives and config.uses_ntr:
                sums["ntr"] += parts.ntr * parts.negatives
                counts["ntr"] += parts.negatives
            bar.update(1)
        elapsed = time.perf_counter() - started
        record: dict[str, float] = {"step": float(step), "epoch": float(epoch)}
        record.update({k: (sums[k] / counts[k] if counts[k] else 0.0) for k in sums})
        record["examples"] = float(n)
        record["examples_per_second"] = n / elapsed if elapsed > 0 else 0.0
        history.append(record)
    bar.close()
    model.eval()

    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "catalog": digest,
        "config": config.to_dict(),
        "user_ids": user_ids,
        # Item rows travel as unit vectors in the version (item_vectors.npy) plus their norms.
        "item_norms": model.item_emb.weight.detach().norm(dim=1).clone(),
        "sparse_opt": sparse.state_dict(),
        "dense_opt": dense.state_dict(),
        "freq": freq.state_dict(),
        "step": step,
    }
    return FitResult(
        vectors=model.export_vectors(),
        encoder=model.export_encoder(user_ids),
        loss_history=history,
        checkpoint=checkpoint,
    )
