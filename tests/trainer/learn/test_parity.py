"""The torch user tower and the NumPy encoder the service runs compute the same vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.learn.model import VetoModel
from veto.events import N_EVENT_TYPES


def _random_model(*, n_items: int, n_users: int, dim: int, history_len: int) -> VetoModel:
    torch.manual_seed(1)
    model = VetoModel(n_items=n_items, n_users=n_users, dim=dim, history_len=history_len)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def _histories(
    rng: np.random.Generator, *, batch: int, length: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    items = rng.integers(0, n_items, (batch, length))
    types = rng.integers(0, N_EVENT_TYPES, (batch, length))
    lengths = rng.integers(0, length + 1, batch)  # includes empty histories
    items[np.arange(length)[None, :] >= lengths[:, None]] = -1
    return items.astype(np.int64), types.astype(np.int64)


@pytest.mark.parametrize("n_users", [0, 5])
def test_torch_and_numpy_encoders_agree(n_users: int) -> None:
    model = _random_model(n_items=40, n_users=n_users, dim=16, history_len=10)
    rng = np.random.default_rng(0)
    items, types = _histories(rng, batch=64, length=10, n_items=40)
    users = rng.integers(-1, max(n_users, 1), 64)
    with torch.no_grad():
        expected = model.encode(
            torch.from_numpy(items), torch.from_numpy(types), torch.from_numpy(users)
        ).numpy()
    user_ids = [f"u{i}" for i in range(n_users)]
    encoder = model.export_encoder(user_ids)
    got = encoder.encode_batch(model.export_vectors(), items, types, users)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_single_history_encode_matches_the_batch_row() -> None:
    model = _random_model(n_items=30, n_users=3, dim=8, history_len=6)
    encoder = model.export_encoder(["a", "b", "c"])
    vectors = model.export_vectors()
    with torch.no_grad():
        expected = model.encode(
            torch.tensor([[4, 7, 2, -1, -1, -1]]),
            torch.tensor([[1, 0, 3, 0, 0, 0]]),
            torch.tensor([1]),
        ).numpy()[0]
    got = encoder.encode(vectors, [4, 7, 2], [1, 0, 3], user_id="b")
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_longer_histories_are_cut_to_the_encoder_length() -> None:
    model = _random_model(n_items=30, n_users=0, dim=8, history_len=4)
    rng = np.random.default_rng(3)
    items, types = _histories(rng, batch=8, length=9, n_items=30)
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(items), torch.from_numpy(types)).numpy()
    got = model.export_encoder([]).encode_batch(model.export_vectors(), items, types)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_load_encoder_round_trips_the_exported_arrays() -> None:
    model = _random_model(n_items=10, n_users=2, dim=8, history_len=5)
    encoder = model.export_encoder(["x", "y"])
    other = VetoModel(n_items=10, n_users=2, dim=8, history_len=5)
    other.load_encoder(encoder)
    for name in ("gate", "bias", "pos_logits", "type_logits", "proj_w", "proj_b"):
        np.testing.assert_array_equal(getattr(other, name).detach().numpy(), getattr(encoder, name))
    weight = other.dislike_weight().detach().numpy()
    np.testing.assert_allclose(weight, encoder.dislike_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(other.user_emb.weight.detach().numpy(), encoder.user_emb)


def test_the_dislike_channel_stays_non_positive_under_training_pressure() -> None:
    model = _random_model(n_items=10, n_users=0, dim=8, history_len=5)
    with torch.no_grad():
        model.dislike_raw.fill_(50.0)  # far past any weight a step could push positive
    assert bool((model.dislike_weight() <= 0).all())
    off = VetoModel(n_items=10, n_users=0, dim=8, history_len=5, dislike_channel=False)
    assert bool((off.dislike_weight() == 0).all())
    assert all(p is not off.dislike_raw for p in off.dense_parameters())
