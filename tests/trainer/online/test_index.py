"""trainer.online.index: the IVF index's sampled recall and when to train a new one."""

from __future__ import annotations

import faiss
import numpy as np

from trainer.online.index import (
    IndexKeeper,
    IndexPlan,
    build_index,
    refresh_index,
    sampled_recall,
)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_sampled_recall_is_one_for_an_exhaustive_search_and_drops_with_drift() -> None:
    rng = np.random.default_rng(0)
    # Trained on a catalog of 20 tight clusters; then every row moves to spread-out vectors.
    centres = rng.standard_normal((20, 16))
    clustered = _unit(centres[rng.integers(0, 20, 2000)] + 0.05 * rng.standard_normal((2000, 16)))
    spread = _unit(rng.standard_normal((2000, 16)))
    index = build_index(clustered, flat_max_items=100, nprobe=2)
    ivf = faiss.extract_index_ivf(index)
    trained = sampled_recall(index, clustered)
    ivf.nprobe = ivf.nlist
    assert sampled_recall(index, clustered) == 1.0
    ivf.nprobe = 2
    refresh_index(index, clustered, spread)
    drifted = sampled_recall(index, spread)
    fresh = build_index(spread, flat_max_items=100, nprobe=2)
    assert drifted < 0.95 * trained  # the plan's default would train a new index
    assert sampled_recall(fresh, spread) > drifted  # and a new one finds more


def test_plan_is_due_below_its_share_of_the_baseline() -> None:
    plan = IndexPlan(baseline=0.8, min_ratio=0.95)
    assert not plan.due(0.8) and not plan.due(0.77)
    assert plan.due(0.75)
    assert not IndexPlan(baseline=0.8, min_ratio=0.0).due(0.0)


def test_an_ivf_flat_index_of_an_older_trainer_becomes_sq8_at_the_next_update() -> None:
    rng = np.random.default_rng(1)
    old = _unit(rng.standard_normal((2000, 16)))
    new = old.copy()
    new[:10] = _unit(rng.standard_normal((10, 16)))
    loaded = build_index(old, flat_max_items=100, nprobe=8, encoding="flat")
    keeper = IndexKeeper(loaded, old, flat_max_items=100, nprobe=8, min_ratio=0.0)

    update = keeper.update(old, new)

    assert update.retrained and isinstance(update.index, faiss.IndexIVFScalarQuantizer)
    assert update.recall is not None and update.recall > 0.5
    # Afterwards the 8-bit index is kept and updated row by row, as any other.
    assert not keeper.update(new, old).retrained and keeper.index is update.index


def test_the_recall_check_measures_the_re_scored_search() -> None:
    vectors = _unit(np.random.default_rng(2).standard_normal((3000, 16)))
    index = build_index(vectors, flat_max_items=100, nprobe=1)
    faiss.extract_index_ivf(index).nprobe = faiss.extract_index_ivf(index).nlist
    # Exhaustive 8-bit candidates, re-scored exactly: brute force's top 10.
    assert sampled_recall(index, vectors) == 1.0
