"""batch_loss: with every item once in the batch and q = 1 it is the full softmax / NTR."""

from __future__ import annotations

import torch

from tests.trainer.worlds import small_config
from trainer.learn.frequency import FrequencyEstimator
from trainer.learn.model import VetoModel
from trainer.learn.step import Batch, batch_loss
from veto.events import EventType

N_ITEMS = 6


def _setup(objective: str) -> tuple[VetoModel, Batch, FrequencyEstimator]:
    torch.manual_seed(0)
    model = VetoModel(n_items=N_ITEMS, n_users=0, dim=4, history_len=3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.7)
    kinds = torch.tensor([0, 1, 0, 1, 0, 0])  # like / dislike labels
    batch = Batch(
        items=torch.tensor(
            [[1, 2, -1], [0, -1, -1], [3, 4, 5], [2, 1, 0], [-1, -1, -1], [5, 0, 1]]
        ),
        types=torch.tensor([[0, 1, 0], [3, 0, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [2, 0, 1]]),
        labels=torch.arange(N_ITEMS),
        kinds=kinds,
        users=torch.full((N_ITEMS,), -1),
        weights=torch.ones(N_ITEMS),
    )
    freq = FrequencyEstimator(n_items=N_ITEMS, alpha=0.1)  # uniform: q = B / N = 1
    return model, batch, freq


def _direct(model: VetoModel, batch: Batch, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-catalog -log p and -log(1 - p) per row, from the model's own encode."""
    states = model.encode(batch.items, batch.types)  # (B, D)
    vectors = model.item_vectors(torch.arange(N_ITEMS))  # (N, D)
    log_p = torch.log_softmax(states @ vectors.T / tau, dim=1)
    log_p_label = log_p.gather(1, batch.labels[:, None]).squeeze(1)
    return -log_p_label, -torch.log1p(-log_p_label.exp())


def test_batch_loss_is_the_full_softmax_and_ntr_when_q_is_one() -> None:
    model, batch, freq = _setup("ssm+ntr")
    config = small_config(n_sampled=0, tau=0.5)
    gen = torch.Generator().manual_seed(0)
    parts = batch_loss(model, batch, config=config, freq=freq, generator=gen)
    ssm, ntr = _direct(model, batch, config.tau)
    like = batch.kinds == int(EventType.LIKE)
    assert parts.positives == 4 and parts.negatives == 2
    assert abs(parts.softmax - ssm[like].mean().item()) < 1e-5
    assert abs(parts.ntr - ntr[~like].mean().item()) < 1e-5
    expected_total = (ssm[like].sum() + ntr[~like].sum()) / N_ITEMS
    assert abs(parts.total.item() - expected_total.item()) < 1e-5


def test_logq_correction_lowers_frequent_candidates() -> None:
    model, batch, freq = _setup("ssm")
    config = small_config(n_sampled=0, tau=0.5, objective="ssm")
    gen = torch.Generator().manual_seed(0)
    plain = batch_loss(model, batch, config=config, freq=freq, generator=gen).softmax
    # Item 0 expected 5x per batch: as a negative its logit drops by log 5.
    frequent = FrequencyEstimator(n_items=N_ITEMS, alpha=0.1)
    state = freq.state_dict()
    counts = state["counts"]
    assert isinstance(counts, torch.Tensor)
    counts = counts.clone()
    counts[0] = 5.0  # the other items keep q = 1
    frequent.load_state_dict({**state, "counts": counts})
    corrected = batch_loss(model, batch, config=config, freq=frequent, generator=gen).softmax
    assert corrected < plain  # a negative discounted by log q makes every positive likelier


def test_ssm_neg_uses_the_users_disliked_history_items_as_negatives() -> None:
    model, batch, freq = _setup("ssm-neg")
    gen = torch.Generator().manual_seed(0)
    base = batch_loss(
        model, batch, config=small_config(n_sampled=0, objective="ssm"), freq=freq, generator=gen
    )
    neg = batch_loss(
        model,
        batch,
        config=small_config(n_sampled=0, objective="ssm-neg"),
        freq=freq,
        generator=gen,
    )
    assert neg.negatives == 2 and neg.ntr != neg.ntr  # no NTR term: NaN mean
    assert neg.softmax > base.softmax  # extra negatives can only raise -log p
