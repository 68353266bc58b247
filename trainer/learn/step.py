"""One training step's loss: candidates, logits and the objective's terms for a batch.

Legend: B batch, L history length, D dim, S uniformly sampled items, C = B + S candidates,
U unique item rows touched by the batch.

Candidates are the batch's label items (in-batch negatives, drawn in proportion to their
frequency) plus S items drawn uniformly. The logQ correction of candidate j is the log of its
expected count in that set, ``log(q_j + S / N)`` with q_j the estimate of its copies
among a batch's labels (``trainer.learn.frequency``). A candidate equal to an example's own label is
masked (an accidental hit). ``ssm-neg`` adds each example's disliked history items as extra,
uncorrected negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.learn.config import TrainConfig
from trainer.learn.frequency import FrequencyEstimator
from trainer.learn.losses import (
    bilateral_softmax,
    candidate_logsumexp,
    masked_logsumexp,
    not_to_recommend,
    sampled_softmax,
)
from trainer.learn.model import VetoModel, unit_rows
from veto.events import EventType


@dataclass(frozen=True)
class Batch:
    """Tensors of one batch (int64 / bool), as ``trainer.learn.examples.Examples`` rows."""

    items: Tensor  # (B, L) history item rows, -1 = padding
    types: Tensor  # (B, L)
    labels: Tensor  # (B,)
    kinds: Tensor  # (B,) EventType of the label
    users: Tensor  # (B,) user rows, -1 = none
    weights: Tensor  # (B,) float: softmax weight of positives, NTR weight of dislikes


@dataclass(frozen=True)
class LossParts:
    """The differentiable total and detached per-term means (NaN where no row had the term)."""

    total: Tensor
    softmax: float
    ntr: float
    positives: int
    negatives: int


def _mean(terms: Tensor) -> float:
    return float(terms.detach().mean()) if terms.numel() else float("nan")


def batch_loss(
    model: VetoModel,
    batch: Batch,
    *,
    config: TrainConfig,
    freq: FrequencyEstimator,
    generator: torch.Generator,
    mask_dislike_input: bool = False,
) -> LossParts:
    """The objective on one batch; updates nothing (the caller steps and updates ``freq``).

    ``mask_dislike_input`` hides dislikes from the user tower while keeping them available as
    ``ssm-neg`` negatives (histories were built with them).
    """
    n_items = model.item_emb.num_embeddings
    b = batch.labels.shape[0]
    sampled = torch.randint(0, n_items, (config.n_sampled,), generator=generator)  # (S,)
    candidates = torch.cat([batch.labels, sampled])  # (C,)
    valid = batch.items >= 0  # (B, L)
    rows = torch.cat([torch.where(valid, batch.items, 0).reshape(-1), candidates])
    # Normalise each touched row once: pooling and scoring read rows of this (U, D) table.
    uniq, inverse = torch.unique(rows, return_inverse=True)  # (U,), (B*L + C,)
    vectors = unit_rows(model.item_emb(uniq))  # (U, D)
    n_hist = batch.items.numel()
    hist_rows = inverse[:n_hist].reshape(batch.items.shape)  # (B, L)
    cand_v = F.embedding(inverse[n_hist:], vectors)  # (C, D)
    is_dislike = batch.types == int(EventType.DISLIKE)  # (B, L)
    encode_valid = valid & ~is_dislike if mask_dislike_input else valid
    states = model.encode_rows(vectors, hist_rows, batch.types, encode_valid, batch.users)

    scaled = states / config.tau  # (B, D): dividing here keeps (B, C) ops to a minimum
    log_q = torch.log(freq.expected_count(candidates, b) + config.n_sampled / n_items)  # (C,)
    hit_rows, hit_cols = torch.nonzero(
        candidates.unsqueeze(0) == batch.labels.unsqueeze(1), as_tuple=True
    )  # accidental hits, including each row's own label
    neg_lse = candidate_logsumexp(scaled, cand_v, log_q, hit_rows, hit_cols)  # (B,)
    label_v = cand_v[:b]  # (B, D): the first B candidates are the labels
    pos_logit = (scaled * label_v).sum(dim=1)  # (B,)

    if config.dislike_negatives:
        # The user's own dislikes as negatives, always present: no logQ correction.
        hist_v = F.embedding(hist_rows, vectors)  # (B, L, D)
        hist_logits = torch.bmm(hist_v, scaled.unsqueeze(2)).squeeze(2)  # (B, L)
        hist_mask = valid & is_dislike & (batch.items != batch.labels.unsqueeze(1))
        neg_lse = torch.logaddexp(neg_lse, masked_logsumexp(hist_logits, hist_mask))

    # Every term on every row, then weighted: row selection on (B, C) would cost a scatter.
    negative = batch.kinds == int(EventType.DISLIKE)  # (B,)
    positive = ~negative
    zero = torch.zeros_like(pos_logit)
    ssm_all = sampled_softmax(pos_logit, neg_lse)  # (B,)
    if config.uses_bsl:
        # Scaled by 1/tau so that tau1 -> inf gives the mean softmax term (same scale as ssm),
        # and by the number of positives so that the total below is a per-example mean.
        ssm_terms = ssm_all[positive]
        bsl = bilateral_softmax(ssm_terms, tau=config.tau, tau1=config.bsl_tau1)
        total = bsl / config.tau * ssm_terms.numel()
    else:
        total = torch.where(positive, batch.weights * ssm_all, zero).sum()
    ntr_all = zero
    if config.uses_ntr:
        ntr_all = not_to_recommend(pos_logit, neg_lse)  # (B,)
        total = total + torch.where(negative, batch.weights * ntr_all, zero).sum()
    ssm_terms = ssm_all.detach()[positive]
    ntr_terms = ntr_all.detach()[negative] if config.uses_ntr else zero[:0]
    return LossParts(
        total=total / b,
        softmax=_mean(ssm_terms),
        ntr=_mean(ntr_terms),
        positives=int(positive.sum()),
        negatives=int(negative.sum()),
    )


class Objective(nn.Module):
    """``batch_loss`` as a module, so that DistributedDataParallel sees the parameters a step
    uses (its forward is the loss). ``SPARSE`` names the embedding tables, which it leaves to
    ``trainer.learn.parallel``."""

    SPARSE = ("model.item_emb.weight", "model.user_emb.weight")

    def __init__(self, model: VetoModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        batch: Batch,
        *,
        config: TrainConfig,
        freq: FrequencyEstimator,
        generator: torch.Generator,
        mask_dislike_input: bool = False,
    ) -> LossParts:
        return batch_loss(
            self.model,
            batch,
            config=config,
            freq=freq,
            generator=generator,
            mask_dislike_input=mask_dislike_input,
        )
