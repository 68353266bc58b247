"""The service ranks with veto.ranking: the item prior and the penalty from the user's
dislikes, against a real Redis and a real FAISS index, and exact NumPy ground truth."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.model_holder import ServingModel, build_serving_model
from service.retrieval import Adjustment, rank
from tests.service.svc_helpers import Serve, event, items_of
from trainer.data.synthetic import SyntheticWorld
from veto.artifacts import load_version
from veto.ranking import Strengths, adjust_scores

pytestmark = pytest.mark.anyio
K = 20


def _nearest(world: SyntheticWorld, item: str, n: int) -> list[str]:
    """The ``n`` items most similar to ``item`` (itself excluded)."""
    row = world.item_ids.index(item)
    sims = world.item_vectors @ world.item_vectors[row]
    order = [int(i) for i in np.argsort(-sims, kind="stable") if int(i) != row]
    return [world.item_ids[i] for i in order[:n]]


async def _recommend(serve: Serve, **strengths: float) -> tuple[list[str], list[float]]:
    async with serve(**strengths) as (_, client):
        resp = await client.get("/v1/users/carol/recommendations", params={"k": K})
    assert resp.status_code == 200
    body = resp.json()
    return items_of(body), [x["score"] for x in body["items"]]


async def test_a_dislike_pushes_similar_items_down_when_the_penalty_is_on(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    disliked = "i40"
    near = _nearest(world, disliked, 5)
    async with serve() as (_, client):
        events = [event("carol", i, "like") for i in near[:2]]  # the user leans towards them
        events.append(event("carol", disliked, "dislike"))
        assert (await client.post("/v1/feedback", json={"events": events})).status_code == 200
    without, raw_scores = await _recommend(serve, prior_weight=0.0, dislike_penalty=0.0)
    with_penalty, _ = await _recommend(serve, prior_weight=0.0, dislike_penalty=1.0)
    row = world.item_ids.index(disliked)

    def closeness(item: str) -> float:
        return float(world.item_vectors[world.item_ids.index(item)] @ world.item_vectors[row])

    def position(items: list[str], item: str) -> int:
        return items.index(item) if item in items else len(items)

    # The served items closest to the disliked one: each ranked lower (or gone) with it.
    similar = sorted(without, key=closeness, reverse=True)[:3]
    assert closeness(similar[-1]) > 0.3  # they are similar indeed
    for item in similar:
        assert position(with_penalty, item) > position(without, item)
    assert np.mean([closeness(i) for i in with_penalty]) < np.mean([closeness(i) for i in without])
    assert disliked not in without and disliked not in with_penalty
    assert raw_scores == sorted(raw_scores, reverse=True)


async def test_both_strengths_zero_serve_the_encoders_exact_top_k(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (app, client):
        events = [event("dave", i, "like") for i in ("i3", "i7")]
        events.append(event("dave", "i11", "dislike"))
        await client.post("/v1/feedback", json={"events": events})
        model = app.state.services.holder.current
    async with serve(prior_weight=0.0, dislike_penalty=0.0) as (_, client):
        body = (await client.get("/v1/users/dave/recommendations", params={"k": K})).json()
    rows = model.version.item_ids.rows(["i11", "i7", "i3"]).tolist()  # newest first
    vec = model.version.encoder.encode(model.version.vectors, rows, [1, 0, 0], "dave")
    scores = np.asarray(model.version.vectors) @ vec  # (N,)
    scores[rows] = -np.inf
    top = np.argsort(-scores, kind="stable")[:K]
    assert items_of(body) == [world.item_ids[r] for r in top]
    np.testing.assert_allclose([x["score"] for x in body["items"]], scores[top], atol=1e-5)


@pytest.fixture
def prior_model(publish_version: Callable[..., Path]) -> ServingModel:
    """Version 1 with a non-zero item prior."""
    version = load_version(publish_version(1))
    prior = np.random.default_rng(5).normal(size=len(version.item_ids)).astype(np.float32)
    return build_serving_model(dataclasses.replace(version, item_prior=prior))


@pytest.mark.parametrize("category", [None, "c3"], ids=["faiss", "category-scan"])
def test_search_and_scan_rank_by_the_adjusted_scores(
    prior_model: ServingModel, category: str | None
) -> None:
    vectors = np.asarray(prior_model.version.vectors)
    query = vectors[9]
    disliked = np.array([9, 17], dtype=np.int64)
    strengths = Strengths(prior_weight=0.3, dislike_penalty=0.8)
    allowed = None if category is None else prior_model.category_rows[category]
    pool = np.arange(len(vectors), dtype=np.int64) if allowed is None else allowed
    # With the whole pool fetched, FAISS's candidates are the catalog: exact ground truth.
    got = rank(prior_model, query, k=10, blocked=disliked, allowed=allowed,
               overfetch=len(vectors), adjustment=Adjustment(disliked, strengths))  # fmt: skip
    exact = adjust_scores(
        (vectors[pool] @ query)[None, :],
        pool,
        item_vectors=vectors,
        prior=prior_model.version.item_prior,
        disliked=[disliked],
        strengths=strengths,
    )[0]
    exact[np.isin(pool, disliked)] = -np.inf
    order = np.argsort(-exact, kind="stable")[:10]
    assert got.rows.tolist() == pool[order].tolist()
    np.testing.assert_allclose(got.scores, exact[order], atol=1e-5)


async def test_a_penalty_window_takes_only_the_newest_dislikes(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    old, newest = "i40", "i90"  # disliked first and last
    async with serve() as (app, client):
        events = [event("erin", old, "dislike")]
        events += [event("erin", i, "like") for i in _nearest(world, old, 3)]
        events.append(event("erin", newest, "dislike"))
        assert (await client.post("/v1/feedback", json={"events": events})).status_code == 200
        model = app.state.services.holder.current
    async with serve(prior_weight=0.0, dislike_penalty=1.0, penalty_window=1) as (_, client):
        body = (await client.get("/v1/users/erin/recommendations", params={"k": K})).json()
    vectors = np.asarray(model.version.vectors)
    state = model.version.encoder.encode(
        vectors,
        model.version.item_ids.rows([newest, *_nearest(world, old, 3)[::-1], old]).tolist(),
        [1, 0, 0, 0, 1],
        "erin",
    )
    served = model.version.item_ids.rows(items_of(body))

    def expected(sources: list[str]) -> np.ndarray:
        rows = model.version.item_ids.rows(sources)
        near = np.maximum(vectors[served] @ vectors[rows].T, 0).max(axis=1)
        out: np.ndarray = vectors[served] @ state - near
        return out

    scores = [x["score"] for x in body["items"]]
    np.testing.assert_allclose(scores, expected([newest]), atol=1e-5)
    # Had the old dislike counted too, some of these scores would differ.
    assert not np.allclose(scores, expected([newest, old]), atol=1e-5)
