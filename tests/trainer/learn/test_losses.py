"""Each loss term against a direct, unsampled computation on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.learn.losses import (
    bilateral_softmax,
    masked_logsumexp,
    not_to_recommend,
    sampled_softmax,
)


def _full_softmax_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (B, N) over a whole tiny catalog and a label per row."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 3
    labels = torch.tensor([0, 3, 6, 2, 2])
    return logits, labels, torch.arange(7)


def _split(
    logits: torch.Tensor, labels: torch.Tensor, items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item as a candidate (q = 1), the label masked as an accidental hit."""
    pos = logits.gather(1, labels[:, None]).squeeze(1)
    mask = items[None, :] != labels[:, None]
    return pos, masked_logsumexp(logits, mask)


def test_sampled_softmax_with_every_item_is_the_full_softmax() -> None:
    logits, labels, items = _full_softmax_inputs()
    pos, lse = _split(logits, labels, items)
    direct = -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(sampled_softmax(pos, lse), direct)


def test_ntr_with_every_item_is_minus_log_one_minus_p() -> None:
    logits, labels, items = _full_softmax_inputs()
    pos, lse = _split(logits, labels, items)
    p = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(not_to_recommend(pos, lse), -torch.log1p(-p))


def test_ntr_gradient_is_p_and_bounded_even_for_extreme_logits() -> None:
    pos = torch.tensor([-50.0, 0.0, 3.0, 80.0, 500.0], dtype=torch.float64, requires_grad=True)
    lse = torch.tensor([0.0, 0.0, 1.0, -20.0, 0.0], dtype=torch.float64)
    not_to_recommend(pos, lse).sum().backward()
    p = torch.exp(pos.detach() - torch.logaddexp(pos.detach(), lse))
    assert pos.grad is not None
    torch.testing.assert_close(pos.grad, p)
    assert torch.all(pos.grad <= 1.0) and torch.all(pos.grad >= 0.0)
    assert torch.isfinite(not_to_recommend(pos, lse)).all()


def test_masked_logsumexp_ignores_masked_entries_and_is_minus_inf_when_all_are() -> None:
    logits = torch.tensor([[1.0, 100.0, 2.0], [5.0, 6.0, 7.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = masked_logsumexp(logits, mask)
    assert out[0].item() == pytest.approx(math.log(math.exp(1) + math.exp(2)), rel=1e-6)
    assert out[1].item() == float("-inf")


def test_ntr_without_candidates_is_finite() -> None:
    out = not_to_recommend(torch.tensor([2.0]), torch.tensor([float("-inf")]))
    assert torch.isfinite(out).all()


def test_bsl_matches_its_formula_and_tends_to_the_softmax_mean() -> None:
    terms = torch.tensor([0.5, 2.0, 4.0, 0.1], dtype=torch.float64)
    tau, tau1 = 0.2, 0.5
    direct = -tau1 * math.log(sum(math.exp(-tau * t / tau1) for t in terms.tolist()) / 4)
    assert bilateral_softmax(terms, tau=tau, tau1=tau1).item() == pytest.approx(direct)
    large = bilateral_softmax(terms, tau=tau, tau1=1e6).item()
    assert large == pytest.approx(tau * terms.mean().item(), rel=1e-4)
    # Smaller tau1 down-weights the implausible (high-loss) positive: below the plain mean.
    assert bilateral_softmax(terms, tau=tau, tau1=tau1).item() < tau * terms.mean().item()


def test_bsl_of_no_positives_is_zero() -> None:
    assert bilateral_softmax(torch.zeros(0), tau=0.1, tau1=1.0).item() == 0.0
