"""The logQ frequency estimate: copies counted, exact when seeded, decayed when streaming."""

from __future__ import annotations

import pytest
import torch

from trainer.learn.frequency import FrequencyEstimator


def test_copies_in_one_batch_are_counted() -> None:
    # Item 0 is 3 of every 4 labels: expected 3 copies in a batch of 4, not at most one.
    est = FrequencyEstimator(n_items=5, alpha=0.5)
    est.seed(torch.tensor([0, 0, 0, 1] * 50))
    q = est.expected_count(torch.tensor([0, 1, 2]), 4)
    assert q.tolist() == pytest.approx([3.0, 1.0, 0.0])


def test_seeded_counts_are_exact_and_scale_with_the_batch() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    est = FrequencyEstimator(n_items=4, alpha=0.1)
    est.seed(labels)
    q = est.expected_count(torch.arange(4), 1000)
    assert q.tolist() == pytest.approx([600.0, 300.0, 100.0, 0.0])


def test_before_any_label_every_item_is_equally_likely() -> None:
    est = FrequencyEstimator(n_items=10, alpha=0.1)
    assert est.expected_count(torch.arange(10), 5).tolist() == pytest.approx([0.5] * 10)


def test_streaming_updates_follow_a_shift_and_forget_the_seed() -> None:
    est = FrequencyEstimator(n_items=3, alpha=0.05)
    est.seed(torch.tensor([0] * 100))
    for _ in range(400):  # the stream now holds only item 1, in batches of 8
        est.update(torch.full((8,), 1))
    q = est.expected_count(torch.tensor([0, 1]), 8)
    assert q[1].item() == pytest.approx(8.0, rel=1e-3)
    assert q[0].item() < 1e-3


def test_state_round_trips_and_rejects_another_catalog_or_format() -> None:
    est = FrequencyEstimator(n_items=5, alpha=0.1)
    est.seed(torch.tensor([1, 2, 2]))
    est.update(torch.tensor([1]))
    other = FrequencyEstimator(n_items=5, alpha=0.1)
    other.load_state_dict(est.state_dict())
    items = torch.arange(5)
    torch.testing.assert_close(other.expected_count(items, 7), est.expected_count(items, 7))
    with pytest.raises(ValueError, match="number of items"):
        FrequencyEstimator(n_items=6, alpha=0.1).load_state_dict(est.state_dict())
    old_format = {"last_seen": torch.zeros(5), "interval": torch.ones(5), "step": 3}
    with pytest.raises(ValueError, match="older format"):
        FrequencyEstimator(n_items=5, alpha=0.1).load_state_dict(old_format)  # type: ignore[arg-type]
