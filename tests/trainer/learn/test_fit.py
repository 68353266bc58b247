"""fit: learns planted tastes, exports serving arrays, warm-starts, rejects bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.trainer.worlds import category_share, small_config, small_dataset
from trainer.learn.config import OBJECTIVES
from trainer.learn.fit import fit
from veto.errors import ConfigError, UnknownItem
from veto.events import EventType, Interaction


def test_fit_learns_liked_categories_and_avoids_disliked_ones() -> None:
    ds = small_dataset()
    result = fit(ds.interactions, item_ids=ds.item_ids, config=small_config())
    index = {item: i for i, item in enumerate(ds.item_ids)}
    liked_share, disliked_share = [], []
    for user in ds.user_ids[:30]:
        events = [x for x in ds.interactions if x.user_id == user][::-1][:10]  # newest first
        state = result.encoder.encode(
            result.vectors, [index[x.item_id] for x in events], [int(x.type) for x in events]
        )
        liked = {ds.categories[index[x.item_id]] for x in events if x.type == EventType.LIKE}
        disliked = {ds.categories[index[x.item_id]] for x in events if x.type == EventType.DISLIKE}
        liked_share.append(category_share(result.vectors, state, ds.categories, liked, 10))
        disliked_share.append(
            category_share(result.vectors, state, ds.categories, disliked - liked, 10)
        )
    # 8 categories, about 2 liked: chance is ~0.25 liked, ~0.12 disliked.
    assert np.mean(liked_share) > 0.6
    assert np.mean(disliked_share) < 0.05


def test_fit_exports_unit_vectors_and_a_loss_log() -> None:
    ds = small_dataset()
    config = small_config(epochs=3)
    result = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    assert result.vectors.shape == (len(ds.item_ids), 16)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.encoder.dim == 16 and result.encoder.history_len == 10
    assert [h["epoch"] for h in result.loss_history] == [0.0, 1.0, 2.0]
    first, last = result.loss_history[0], result.loss_history[-1]
    assert last["total"] < first["total"]
    assert {"step", "total", "softmax", "ntr", "examples"} <= set(first)
    assert first["ntr"] > 0  # the default objective trains on dislikes


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains_with_finite_losses(objective: str) -> None:
    ds = small_dataset(n_users=20)
    config = small_config(objective=objective, epochs=2)
    result = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    for record in result.loss_history:
        assert all(np.isfinite(v) for v in record.values())
        assert (record["ntr"] > 0) == config.uses_ntr
    assert np.isfinite(result.vectors).all()


def test_warm_start_continues_from_the_checkpoint() -> None:
    ds = small_dataset(n_users=20)
    config = small_config(epochs=2)
    first = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    same = fit([], item_ids=ds.item_ids, config=config, init=first)
    np.testing.assert_allclose(same.vectors, first.vectors, atol=1e-6)
    np.testing.assert_allclose(same.encoder.proj_w, first.encoder.proj_w)
    assert same.loss_history == []
    more = fit(ds.interactions[:200], item_ids=ds.item_ids, config=config, init=first)
    assert more.checkpoint is not None and first.checkpoint is not None
    assert more.checkpoint.step > first.checkpoint.step
    assert not np.allclose(more.vectors, first.vectors)


def test_warm_start_from_arrays_without_a_checkpoint() -> None:
    ds = small_dataset(n_users=20)
    config = small_config(epochs=1)
    first = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    bare = dataclasses.replace(first, checkpoint=None)
    again = fit([], item_ids=ds.item_ids, config=config, init=bare)
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)


def test_per_user_embeddings_keep_known_users_and_add_new_ones() -> None:
    ds = small_dataset(n_users=20)
    config = small_config(epochs=1, user_embedding=True)
    first = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    assert set(first.encoder.user_index) == set(ds.user_ids)
    new = [Interaction("newcomer", ds.item_ids[0], EventType.LIKE, 2e9)]
    second = fit(new, item_ids=ds.item_ids, config=config, init=first)
    assert set(second.encoder.user_index) == {*ds.user_ids, "newcomer"}
    row_a, row_b = first.encoder.user_index["u5"], second.encoder.user_index["u5"]
    np.testing.assert_allclose(second.encoder.user_emb[row_b], first.encoder.user_emb[row_a])


def test_unknown_item_is_rejected() -> None:
    ds = small_dataset(n_users=5)
    bad = [*ds.interactions, Interaction("u1", "not-an-item", EventType.LIKE, 2e9)]
    with pytest.raises(UnknownItem, match="not-an-item"):
        fit(bad, item_ids=ds.item_ids, config=small_config(epochs=1))


def test_warm_start_on_another_catalog_is_rejected() -> None:
    ds = small_dataset(n_users=5)
    config = small_config(epochs=1)
    first = fit(ds.interactions, item_ids=ds.item_ids, config=config)
    with pytest.raises(ConfigError, match="catalog"):
        fit([], item_ids=[*ds.item_ids, "extra"], config=config, init=first)
    with pytest.raises(ConfigError, match="warm start"):
        fit([], item_ids=ds.item_ids, config=small_config(dim=8), init=first)


def test_empty_or_duplicate_catalog_is_rejected() -> None:
    with pytest.raises(ConfigError):
        fit([], item_ids=[], config=small_config())
    with pytest.raises(ConfigError):
        fit([], item_ids=["a", "a"], config=small_config())
