"""The pure ranking and retrieval functions, against exact NumPy ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.model_holder import ServingModel, build_serving_model
from service.ranking import fetch_size, select_top_k
from service.reloader import load_serving_model
from service.retrieval import category_rows, fallback, search
from tests.version_factory import small_world, write_demo_version
from veto.artifacts import load_version
from veto.errors import InvalidInput


@pytest.fixture
def model(publish_version: Callable[..., Path]) -> ServingModel:
    return build_serving_model(load_version(publish_version(1)))


def test_select_top_k_drops_missing_blocked_and_repeated_ids() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.7, 0.6, 0.5], dtype=np.float32)
    ids = np.array([4, -1, 2, 4, 7, 1], dtype=np.int64)
    rows, vals = select_top_k(scores, ids, k=3, blocked=np.array([7], dtype=np.int64))
    assert rows.tolist() == [4, 2, 1]
    assert vals.tolist() == pytest.approx([0.9, 0.7, 0.5])
    empty, _ = select_top_k(scores, np.full(6, -1, dtype=np.int64), k=3, blocked=rows)
    assert empty.size == 0


def test_fetch_size_covers_filters_and_never_exceeds_the_catalog() -> None:
    assert fetch_size(10, n_blocked=5, margin=20, n_items=1000) == 35
    assert fetch_size(10, n_blocked=5000, margin=20, n_items=1000) == 1000


def test_search_widens_until_k_survive_a_large_block_list(model: ServingModel) -> None:
    vectors = np.asarray(model.version.vectors)
    query = vectors[0]
    exact = np.argsort(-(vectors @ query), kind="stable")
    blocked = exact[:300].astype(np.int64)  # far more than any first fetch
    got = search(model, query, k=5, blocked=blocked, overfetch=0)
    assert got.rows.tolist() == exact[300:305].tolist()


def test_fallback_fills_from_recent_likes_then_the_model_then_the_catalog(
    model: ServingModel,
) -> None:
    blocked = model.version.item_ids.rows(["i1"])
    got = fallback(model, [("i9", 4.0), ("ghost", 3.0), ("i1", 2.0)], k=8, blocked=blocked,
                   allowed=None)  # fmt: skip
    ids = [model.version.item_ids[r] for r in got.rows]
    assert ids[:5] == ["i9", "i0", "i2", "i3", "i4"]  # popular.json = i0..i4, i1 blocked
    assert len(ids) == 8 and len(set(ids)) == 8 and "i1" not in ids
    assert got.scores.tolist()[:2] == [4.0, 0.0]


def test_unknown_category_is_invalid_input(model: ServingModel) -> None:
    with pytest.raises(InvalidInput):
        category_rows(model, "no-such-category")


def test_category_lookups_follow_the_catalog_across_swaps(
    model: ServingModel, artifacts_dir: Path
) -> None:
    same = load_serving_model(artifacts_dir, 1, model)
    assert same.category_codes is model.category_codes
    assert category_rows(same, "c3") is category_rows(model, "c3")

    other = small_world(n_items=120, seed=7)
    write_demo_version(artifacts_dir, 2, world=other)
    changed = load_serving_model(artifacts_dir, 2, model)
    expected = [row for row, cat in enumerate(other.categories) if cat == "c3"]
    rows = category_rows(changed, "c3")
    assert rows is not None and rows.tolist() == expected
