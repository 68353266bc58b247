"""The loss terms, as pure functions over logits.

Legend: B examples, C candidates (the batch's label items plus S uniformly sampled items,
plus, for ``ssm-neg``, the user's disliked items), masked where a candidate is the example's
own label (an accidental hit) or padding.

Logits are cosine / temperature. A *sampled* candidate j gets the logQ correction of Yi et
al. (2019): ``z_j = cos(s, v_j) / tau - log q_j`` with q_j its expected count in the candidate
set; the label keeps ``z_y = cos(s, v_y) / tau``. With every item as a candidate (q = 1) the
terms below are exactly the full-softmax quantities.

    p(y | s) = exp(z_y) / (exp(z_y) + sum_{j in S} exp(z_j))          S = unmasked candidates

    ssm  (sampled softmax, likes)        l = -log p(y | s) = -z_y + logsumexp([z_y, z_S])
    ntr  (Not-to-Recommend, dislikes)    l = -w log(1 - p(y | s)) = w softplus(z_y - logsumexp(z_S))
                                         d l / d z_y = w p  -- bounded by w (Wang et al. 2023)
    bsl  (bilateral softmax, Wu et al. 2024, arXiv 2312.12882): the softmax's
         log-expectation-exp over negatives applied to the positives too, over the batch:
             L = -tau1 log mean_i exp(-tau l_i / tau1),  l_i the ssm term of positive i
         which down-weights positives the model finds implausible (noisy positives);
         tau1 -> inf gives tau * mean(l_i), the plain softmax loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_logsumexp(logits: Tensor, mask: Tensor) -> Tensor:
    """logsumexp over the last axis of ``logits`` where ``mask`` is True; -inf if none."""
    return torch.logsumexp(logits.masked_fill(~mask, float("-inf")), dim=-1)


class _CandidateLogSumExp(torch.autograd.Function):
    """Fused logsumexp over corrected candidate logits; see ``candidate_logsumexp``."""

    @staticmethod
    def forward(
        ctx: Any,
        states: Tensor,
        cand: Tensor,
        log_q: Tensor,
        hit_rows: Tensor,
        hit_cols: Tensor,
    ) -> Tensor:
        z = torch.addmm(-log_q.unsqueeze(0), states, cand.T)  # (B, C)
        z[hit_rows, hit_cols] = float("-inf")
        lse = torch.logsumexp(z, dim=1)  # (B,)
        ctx.save_for_backward(states, cand, z, lse)
        return lse

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        states, cand, z, lse = ctx.saved_tensors
        safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        # softmax(z) * grad, in place on the saved logits: the (B, C) matrix is not copied.
        weights = z.sub_(safe.unsqueeze(1)).exp_().mul_(grad.unsqueeze(1))  # (B, C)
        return weights @ cand, weights.T @ states, None, None, None


def candidate_logsumexp(
    states: Tensor, cand: Tensor, log_q: Tensor, hit_rows: Tensor, hit_cols: Tensor
) -> Tensor:
    """logsumexp_j (s_b · v_j - log q_j) over candidates j, skipping accidental hits (B,).

    states (B, D) user states already divided by tau; cand (C, D) unit candidate vectors;
    log_q (C,) the logQ correction (no gradient); (hit_rows, hit_cols) the masked entries.
    The same as ``masked_logsumexp`` on the (B, C) logits, with two fewer passes over them.
    """
    out: Tensor = _CandidateLogSumExp.apply(  # type: ignore[no-untyped-call]
        states, cand, log_q, hit_rows, hit_cols
    )
    return out


def sampled_softmax(pos_logit: Tensor, neg_lse: Tensor) -> Tensor:
    """Per-example -log p(y|s) = -z_y + logaddexp(z_y, logsumexp(z_S)) (B,).

    pos_logit (B,) z_y; neg_lse (B,) logsumexp of the unmasked candidates (``masked_logsumexp``,
    computed once and shared with ``not_to_recommend``).
    """
    return -pos_logit + torch.logaddexp(pos_logit, neg_lse)


def not_to_recommend(pos_logit: Tensor, neg_lse: Tensor) -> Tensor:
    """Per-example -log(1 - p(y|s)) = softplus(z_y - logsumexp(z_S)) (B,), the stable form.

    Its gradient with respect to z_y is p(y|s): bounded by 1, however confident the model.
    """
    # No candidate at all: p = 1 and the loss is unbounded; such rows carry no signal.
    diff = torch.where(torch.isfinite(neg_lse), pos_logit - neg_lse, torch.zeros_like(pos_logit))
    return F.softplus(diff)


def bilateral_softmax(ssm_terms: Tensor, *, tau: float, tau1: float) -> Tensor:
    """BSL over a batch of positives: -tau1 log mean_i exp(-tau l_i / tau1) (scalar)."""
    if ssm_terms.numel() == 0:
        return ssm_terms.sum()
    scaled = -tau * ssm_terms / tau1  # (P,)
    return -tau1 * (torch.logsumexp(scaled, dim=0) - math.log(ssm_terms.numel()))
