"""veto.encoder: the NumPy user encoder the service runs per request."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from veto.encoder import ARRAY_NAMES, UserEncoder
from veto.events import N_EVENT_TYPES, EventType

D, L, N = 8, 6, 30
LIKE, DISLIKE, SKIP = int(EventType.LIKE), int(EventType.DISLIKE), int(EventType.SKIP)


def _items(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((N, D)).astype(np.float32)  # (N, D)
    out: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def _trained_like(seed: int = 1, users: int = 3) -> UserEncoder:
    """An encoder with every array non-trivial, as a trained one would be."""
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return UserEncoder(
        gate=f(N_EVENT_TYPES, D),
        bias=0.1 * f(N_EVENT_TYPES, D),
        pos_logits=f(L),
        type_logits=f(N_EVENT_TYPES),
        proj_w=f(D, D),
        proj_b=f(D),
        dislike_w=-np.abs(f(D)),
        user_emb=f(users, D),
        user_index={f"u{i}": i for i in range(users)},
    )


def test_empty_history_is_normalised_proj_b() -> None:
    enc = _trained_like()
    s = enc.encode(_items(), [], [])
    np.testing.assert_allclose(s, enc.proj_b / np.linalg.norm(enc.proj_b), rtol=1e-5)


def test_known_user_adds_their_embedding() -> None:
    enc = _trained_like()
    s = enc.encode(_items(), [], [], user_id="u1")
    u = enc.proj_b + enc.user_emb[1]
    np.testing.assert_allclose(s, u / np.linalg.norm(u), rtol=1e-5)
    unknown = enc.encode(_items(), [], [], user_id="nobody")
    np.testing.assert_allclose(unknown, enc.encode(_items(), [], []), rtol=1e-6)


def test_output_is_unit_norm() -> None:
    enc = _trained_like()
    s = enc.encode(_items(), [3, 4, 5], [LIKE, DISLIKE, SKIP], user_id="u0")
    assert s.shape == (D,) and s.dtype == np.float32
    assert abs(float(np.linalg.norm(s)) - 1.0) < 1e-5


def test_padding_does_not_change_the_state() -> None:
    enc = _trained_like()
    vectors = _items()
    items = np.array([[3, 7, 9]], dtype=np.int64)  # (1, 3)
    types = np.array([[LIKE, DISLIKE, LIKE]], dtype=np.int64)
    padded_items = np.array([[3, 7, 9, -1, -1]], dtype=np.int64)  # (1, 5)
    padded_types = np.array([[LIKE, DISLIKE, LIKE, SKIP, DISLIKE]], dtype=np.int64)
    a = enc.encode_batch(vectors, items, types)
    b = enc.encode_batch(vectors, padded_items, padded_types)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_history_beyond_history_len_is_ignored() -> None:
    enc = _trained_like()
    vectors = _items()
    items = list(range(L))
    types = [LIKE] * L
    s = enc.encode(vectors, items, types)
    longer = enc.encode(vectors, [*items, 20, 21], [*types, DISLIKE, DISLIKE])
    np.testing.assert_allclose(s, longer, rtol=1e-5, atol=1e-6)


def test_batch_equals_single() -> None:
    enc = _trained_like()
    vectors = _items()
    histories = [([1, 2, 3], [LIKE, DISLIKE, LIKE], "u0"), ([], [], None), ([5], [SKIP], "u2")]
    items = np.full((3, 3), -1, dtype=np.int64)  # (B, L')
    types = np.zeros((3, 3), dtype=np.int64)
    rows = np.array([0, -1, 2], dtype=np.int64)  # (B,)
    for b, (its, tys, _) in enumerate(histories):
        items[b, : len(its)] = its
        types[b, : len(tys)] = tys
    batch = enc.encode_batch(vectors, items, types, rows)  # (B, D)
    for b, (its, tys, user) in enumerate(histories):
        np.testing.assert_allclose(batch[b], enc.encode(vectors, its, tys, user), rtol=1e-5)


def test_encode_many_pads_histories_of_any_length_to_the_single_answers() -> None:
    enc = _trained_like()
    vectors = _items()
    long = list(range(L + 2))  # beyond history_len: truncated, as encode does
    histories = [
        ([1, 2, 3], [LIKE, DISLIKE, LIKE], "u0"),
        ([], [], None),
        ([5], [SKIP], "stranger"),
        (long, [DISLIKE] * len(long), "u2"),
    ]
    many = enc.encode_many(
        vectors, [h[0] for h in histories], [h[1] for h in histories], [h[2] for h in histories]
    )  # (B, D)
    assert many.shape == (len(histories), D) and many.dtype == np.float32
    for b, (its, tys, user) in enumerate(histories):
        np.testing.assert_allclose(many[b], enc.encode(vectors, its, tys, user), rtol=1e-5)


def test_dislike_with_initial_encoder_moves_user_away_from_item() -> None:
    enc = UserEncoder.initial(dim=D, history_len=L, n_types=N_EVENT_TYPES)
    vectors = _items()
    liked, disliked = 2, 11
    before = enc.encode(vectors, [liked], [LIKE])
    after = enc.encode(vectors, [disliked, liked], [DISLIKE, LIKE])
    assert float(after @ vectors[disliked]) < float(before @ vectors[disliked]) - 0.1
    only_dislike = enc.encode(vectors, [disliked], [DISLIKE])
    assert float(only_dislike @ vectors[disliked]) < -0.9


def test_like_with_initial_encoder_points_at_item() -> None:
    enc = UserEncoder.initial(dim=D, history_len=L, n_types=N_EVENT_TYPES)
    vectors = _items()
    s = enc.encode(vectors, [4], [LIKE])
    assert float(s @ vectors[4]) > 0.9


def test_save_load_round_trip(tmp_path: Path) -> None:
    enc = _trained_like()
    path = tmp_path / "encoder.npz"
    enc.save(path)
    loaded = UserEncoder.load(path, ["u0", "u1", "u2"])
    vectors = _items()
    for name in ("gate", "bias", "pos_logits", "type_logits", "proj_w", "proj_b", "user_emb"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(enc, name))
    np.testing.assert_array_equal(
        loaded.encode(vectors, [1, 2], [LIKE, DISLIKE], "u2"),
        enc.encode(vectors, [1, 2], [LIKE, DISLIKE], "u2"),
    )


def test_load_refuses_mismatched_user_ids(tmp_path: Path) -> None:
    path = tmp_path / "encoder.npz"
    _trained_like(users=3).save(path)
    with pytest.raises(ValueError, match="user_ids"):
        UserEncoder.load(path, ["u0"])


def test_one_dislike_among_many_likes_is_not_diluted_by_the_pooling() -> None:
    items = _items()
    pooled = replace(
        _trained_like(users=0),
        pos_logits=np.zeros(40, dtype=np.float32),
        type_logits=np.zeros(N_EVENT_TYPES, dtype=np.float32),
        dislike_w=np.zeros(D, dtype=np.float32),
    )
    channel = replace(pooled, dislike_w=np.full(D, -1.0, dtype=np.float32))
    likes = list(range(1, N))  # 29 liked items, then one dislike of item 0 on top

    def drop(enc: UserEncoder) -> float:
        base = enc.encode(items, likes, [LIKE] * len(likes))
        after = enc.encode(items, [0, *likes], [DISLIKE] + [LIKE] * len(likes))
        return float(base @ items[0] - after @ items[0])

    # Pooled with the likes the dislike weighs 1/30; the channel averages dislikes alone.
    assert drop(channel) > 3 * abs(drop(pooled))
    assert drop(channel) > 0.1


def test_an_encoder_saved_without_the_dislike_channel_loads_with_it_off(tmp_path: Path) -> None:
    enc = _trained_like(users=2)
    path = tmp_path / "encoder.npz"
    old = {name: getattr(enc, name) for name in ARRAY_NAMES if name != "dislike_w"}
    with path.open("wb") as fh:
        np.savez(fh, **old)
    loaded = UserEncoder.load(path, ["u0", "u1"])
    np.testing.assert_array_equal(loaded.dislike_w, np.zeros(D, dtype=np.float32))
