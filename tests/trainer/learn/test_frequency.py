"""Streaming frequency estimation converges to the true sighting interval."""

from __future__ import annotations

import pytest
import torch

from trainer.learn.frequency import FrequencyEstimator


def test_estimate_converges_to_one_over_the_interval() -> None:
    est = FrequencyEstimator(n_items=10, buckets=0, alpha=0.05, prior_interval=100.0)
    for step in range(2000):
        seen = [0] + ([1] if step % 4 == 0 else []) + ([2] if step % 20 == 0 else [])
        est.update(torch.tensor(seen))
    q = est.expected_count(torch.tensor([0, 1, 2, 3]))
    assert q[0].item() == pytest.approx(1.0, rel=0.02)
    assert q[1].item() == pytest.approx(0.25, rel=0.05)
    assert q[2].item() == pytest.approx(0.05, rel=0.1)
    assert q[3].item() == pytest.approx(0.01)  # never seen: the prior


def test_state_round_trips_and_rejects_a_different_size() -> None:
    est = FrequencyEstimator(n_items=5, buckets=0, alpha=0.1, prior_interval=10.0)
    est.update(torch.tensor([1, 2]))
    est.update(torch.tensor([1]))
    other = FrequencyEstimator(n_items=5, buckets=0, alpha=0.1, prior_interval=10.0)
    other.load_state_dict(est.state_dict())
    items = torch.arange(5)
    torch.testing.assert_close(other.expected_count(items), est.expected_count(items))
    assert other.step == 2
    with pytest.raises(ValueError):
        FrequencyEstimator(n_items=6, buckets=0, alpha=0.1, prior_interval=1.0).load_state_dict(
            est.state_dict()
        )


def test_hashed_buckets_stay_in_range() -> None:
    est = FrequencyEstimator(n_items=1000, buckets=16, alpha=0.1, prior_interval=10.0)
    est.update(torch.arange(1000))
    assert est.expected_count(torch.arange(1000)).shape == (1000,)
