"""Hypothesis properties of the ranking/filtering core (service/ranking.py, service/retrieval.py):
never a blocked or disallowed item, never more than k, scores descending, no duplicates, FAISS's
-1 slots ignored, and as many items as the filters leave (up to k). The retrieval properties run
on a real FAISS index of a small written version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.model_holder import ServingModel, build_serving_model
from service.ranking import fetch_size, scan_rows, select_top_k
from service.retrieval import fallback, rank
from tests.version_factory import small_world, write_demo_version
from veto.artifacts import load_version

N_ITEMS = 120
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

I64 = npt.NDArray[np.int64]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    """A real flat FAISS version of N_ITEMS items (written once per module)."""
    root: Path = tmp_path_factory.mktemp("ranking-artifacts")
    path = write_demo_version(root, 1, world=small_world(n_items=N_ITEMS, seed=11))
    return build_serving_model(load_version(path))


# A search result: M candidate slots, ids in [-1, 40) (-1 = empty slot, repeats allowed),
# scores finite and with deliberate ties (a coarse grid).
@st.composite
def candidates(draw: st.DrawFn) -> tuple[npt.NDArray[np.float32], I64]:
    m = draw(st.integers(min_value=0, max_value=60))
    ids = draw(hnp.arrays(np.int64, m, elements=st.integers(min_value=-1, max_value=39)))
    grid = draw(hnp.arrays(np.int64, m, elements=st.integers(min_value=-8, max_value=8)))
    return (grid.astype(np.float32) / 4.0), ids


row_sets = st.lists(st.integers(min_value=0, max_value=39), max_size=30, unique=True).map(
    lambda xs: np.asarray(xs, dtype=np.int64)
)


def _assert_ranked(rows: I64, scores: npt.NDArray[np.float32], *, k: int, blocked: I64) -> None:
    """The invariants every ranked list keeps."""
    assert rows.shape == scores.shape
    assert rows.size <= k
    assert len(set(rows.tolist())) == rows.size, "duplicate rows"
    assert not set(rows.tolist()) & set(blocked.tolist()), "a blocked row was returned"
    assert (rows >= 0).all(), "a -1 slot was returned"
    assert (np.diff(scores) <= 0).all(), "scores not descending"


@PROPS
@given(cands=candidates(), k=st.integers(min_value=0, max_value=25), blocked=row_sets,
       mask_seed=st.integers(min_value=0, max_value=2**32 - 1), use_mask=st.booleans())  # fmt: skip
def test_select_top_k_keeps_its_invariants_and_matches_a_reference(
    cands: tuple[npt.NDArray[np.float32], I64],
    k: int,
    blocked: I64,
    mask_seed: int,
    use_mask: bool,
) -> None:
    scores, ids = cands
    allowed = np.random.default_rng(mask_seed).random(ids.size) < 0.6 if use_mask else None
    rows, vals = select_top_k(scores, ids, k=k, blocked=blocked, allowed=allowed)
    _assert_ranked(rows, vals, k=k, blocked=blocked)
    if allowed is not None:
        permitted = set(ids[allowed].tolist())
        assert set(rows.tolist()) <= permitted, "a disallowed candidate was returned"
    # Reference: best score per eligible id, then the k best (score desc, id asc).
    best: dict[int, float] = {}
    for i, (row, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True)):
        if row < 0 or row in set(blocked.tolist()) or (allowed is not None and not allowed[i]):
            continue
        best[row] = max(best.get(row, -np.inf), score)
    expected = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[: max(k, 0)]
    assert rows.tolist() == [r for r, _ in expected]
    assert vals.tolist() == [s for _, s in expected]


@PROPS
@given(k=st.integers(min_value=1, max_value=500), n_blocked=st.integers(0, 10_000),
       margin=st.integers(0, 1000), n_items=st.integers(1, 100_000))  # fmt: skip
def test_fetch_size_is_positive_within_the_catalog_and_covers_the_filters(
    k: int, n_blocked: int, margin: int, n_items: int
) -> None:
    fetch = fetch_size(k, n_blocked=n_blocked, margin=margin, n_items=n_items)
    assert 1 <= fetch <= n_items
    assert fetch == n_items or fetch >= k + n_blocked


def _query(seed: int) -> npt.NDArray[np.float32]:
    q = np.random.default_rng(seed).standard_normal(16).astype(np.float32)  # (D,)
    return q / np.linalg.norm(q)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40),
       blocked=st.lists(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS, unique=True),
       overfetch=st.integers(0, 30))  # fmt: skip
def test_faiss_ranking_never_returns_blocked_items_and_fills_k(
    model: ServingModel, seed: int, k: int, blocked: list[int], overfetch: int
) -> None:
    block = np.asarray(blocked, dtype=np.int64)
    query = _query(seed)
    got = rank(model, query, k=k, blocked=block, allowed=None, overfetch=overfetch)
    _assert_ranked(got.rows, got.scores, k=k, blocked=block)
    # Widening guarantees k results whenever the catalog has k unblocked items.
    assert got.rows.size == min(k, N_ITEMS - len(blocked))
    # And they are the exact best: the same scores as brute force over the unblocked rows.
    exact = np.asarray(model.version.vectors) @ query  # (N,)
    exact[block] = -np.inf
    want = np.sort(exact)[::-1][: got.rows.size]
    np.testing.assert_allclose(got.scores, want, rtol=1e-5, atol=1e-5)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40),
       category=st.integers(0, 7),
       blocked=st.lists(st.integers(0, N_ITEMS - 1), max_size=60, unique=True))  # fmt: skip
def test_category_ranking_stays_inside_the_category(
    model: ServingModel, seed: int, k: int, category: int, blocked: list[int]
) -> None:
    names = sorted(model.category_rows)
    allowed = model.category_rows[names[category % len(names)]]
    block = np.asarray(blocked, dtype=np.int64)
    got = rank(model, _query(seed), k=k, blocked=block, allowed=allowed, overfetch=5)
    _assert_ranked(got.rows, got.scores, k=k, blocked=block)
    assert set(got.rows.tolist()) <= set(allowed.tolist())
    assert got.rows.size == min(k, len(set(allowed.tolist()) - set(blocked)))


@PROPS
@given(k=st.integers(1, 40),
       popular=st.lists(st.tuples(st.one_of(st.integers(0, N_ITEMS + 20).map(lambda n: f"i{n}"),
                                            st.just("ghost")),
                                  st.floats(0, 1000, allow_nan=False)), max_size=30),
       blocked=st.lists(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS, unique=True),
       category=st.one_of(st.none(), st.integers(0, 7)))  # fmt: skip
def test_fallback_never_returns_blocked_or_disallowed_items_and_fills_k(
    model: ServingModel,
    k: int,
    popular: list[tuple[str, float]],
    blocked: list[int],
    category: int | None,
) -> None:
    names = sorted(model.category_rows)
    allowed = None if category is None else model.category_rows[names[category % len(names)]]
    block = np.asarray(blocked, dtype=np.int64)
    got = fallback(model, popular, k=k, blocked=block, allowed=allowed)
    rows = got.rows.tolist()
    assert len(rows) <= k and len(set(rows)) == len(rows)
    assert not set(rows) & set(blocked)
    pool = set(range(N_ITEMS)) if allowed is None else set(allowed.tolist())
    assert set(rows) <= pool
    assert len(rows) == min(k, len(pool - set(blocked)))


@PROPS
@given(seed=st.integers(0, 2**32 - 1),
       rows=st.lists(st.integers(0, N_ITEMS - 1), max_size=50, unique=True))  # fmt: skip
def test_scan_rows_scores_exactly_the_given_rows(
    model: ServingModel, seed: int, rows: list[int]
) -> None:
    picked = np.asarray(rows, dtype=np.int64)
    query = _query(seed)
    scores, ids = scan_rows(model.version.vectors, picked, query)
    assert ids.tolist() == rows
    np.testing.assert_allclose(scores, np.asarray(model.version.vectors)[picked] @ query, rtol=1e-5)
