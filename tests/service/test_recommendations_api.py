"""GET /v1/users/{user_id}/recommendations and /v1/items/{item_id}/similar against a real
Redis and a real FAISS index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.conftest import BOTH
from tests.service.svc_helpers import PARTITIONS, Serve, event, items_in, items_of
from trainer.data.synthetic import SyntheticWorld
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("redis_backend", BOTH, indirect=True),
]


async def test_recommendations_have_the_documented_shape(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        likes = [event("alice", i, "like") for i in items_in(world, "c1", 3)]
        assert (await client.post("/v1/feedback", json={"events": likes})).status_code == 200
        resp = await client.get("/v1/users/alice/recommendations", params={"k": 7})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"user_id", "items", "model_version", "request_id", "degraded"}
    assert body["user_id"] == "alice" and body["model_version"] == 1
    assert body["degraded"] is False and len(body["request_id"]) == 32
    assert len(body["items"]) == 7
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(set(items_of(body))) == 7


@pytest.mark.parametrize("offload_min_cost", [0, 10**9], ids=["in-thread", "inline"])
async def test_recommendations_follow_the_history_and_match_exact_search(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld, offload_min_cost: int
) -> None:
    publish_version(1)
    liked = items_in(world, "c2", 4)
    async with serve(offload_min_cost=offload_min_cost) as (app, client):
        await client.post("/v1/feedback", json={"events": [event("bob", i, "like") for i in liked]})
        body = (await client.get("/v1/users/bob/recommendations", params={"k": 10})).json()
        model = app.state.services.holder.current
    # Ground truth: exact inner products of the encoder's user vector against every item.
    rows = model.version.item_ids.rows(list(reversed(liked))).tolist()
    vec = model.version.encoder.encode(model.version.vectors, rows, [0] * len(rows), "bob")
    scores = np.asarray(model.version.vectors) @ vec
    scores[rows] = -np.inf  # liked items are hidden by default
    expected = [world.item_ids[r] for r in np.argsort(-scores, kind="stable")[:10]]
    assert items_of(body) == expected
    assert sum(world.categories[world.item_ids.index(i)] == "c2" for i in items_of(body)) >= 8


async def test_disliked_item_never_served(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        likes = [event("carol", i, "like") for i in items_in(world, "c3", 3)]
        await client.post("/v1/feedback", json={"events": likes})
        first = items_of((await client.get("/v1/users/carol/recommendations?k=10")).json())
        dislikes = [event("carol", i, "dislike") for i in first]
        assert (await client.post("/v1/feedback", json={"events": dislikes})).json() == {
            "accepted": 10,
            "duplicates": 0,
        }
        after = items_of((await client.get("/v1/users/carol/recommendations?k=50")).json())
        with_seen = await client.get(
            "/v1/users/carol/recommendations", params={"k": 200, "include_seen": "true"}
        )
        metrics = (await client.get("/metrics")).text
    assert not set(first) & set(after)
    assert not set(first) & set(items_of(with_seen.json()))
    assert "veto_disliked_item_served_total 0.0" in metrics


async def test_liked_items_are_hidden_unless_include_seen(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    liked = items_in(world, "c4", 3)
    async with serve() as (_, client):
        await client.post("/v1/feedback", json={"events": [event("dan", i, "like") for i in liked]})
        hidden = items_of((await client.get("/v1/users/dan/recommendations?k=20")).json())
        shown = await client.get("/v1/users/dan/recommendations?k=20&include_seen=true")
    assert not set(liked) & set(hidden)
    assert set(liked) <= set(items_of(shown.json()))


async def test_exclude_removes_the_listed_items(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await client.post("/v1/feedback", json={"events": [event("eve", "i1", "like")]})
        first = items_of((await client.get("/v1/users/eve/recommendations?k=5")).json())
        params = [("k", "5"), *[("exclude", i) for i in first[:3]], ("exclude", "not-an-item")]
        second = items_of((await client.get("/v1/users/eve/recommendations", params=params)).json())
    assert len(second) == 5
    assert not set(first[:3]) & set(second)
    assert second[:2] == first[3:5]


async def test_category_filter_returns_only_that_category(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await client.post("/v1/feedback", json={"events": [event("fay", "i1", "like")]})
        known = await client.get("/v1/users/fay/recommendations?k=12&category=c5")
        unknown = await client.get("/v1/users/nobody/recommendations?k=12&category=c5")
        bad = await client.get("/v1/users/fay/recommendations?category=nope")
    for resp in (known, unknown):
        got = items_of(resp.json())
        assert len(got) == 12
        assert {world.categories[world.item_ids.index(i)] for i in got} == {"c5"}
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["errors"][0]["field"] == "category"


async def test_unknown_user_gets_recently_most_liked_items(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        # i7 liked by three users, i9 by two, i8 by one: that is the fallback order.
        likes = [event(f"u{n}", item, "like") for item, n_users in (("i7", 3), ("i9", 2), ("i8", 1))
                 for n in range(n_users)]  # fmt: skip
        await client.post("/v1/feedback", json={"events": likes})
        resp = await client.get("/v1/users/stranger/recommendations?k=5")
    body = resp.json()
    assert resp.status_code == 200 and body["degraded"] is False
    assert items_of(body)[:3] == ["i7", "i9", "i8"]
    assert [x["score"] for x in body["items"][:3]] == [3.0, 2.0, 1.0]
    assert len(body["items"]) == 5


async def test_unknown_user_without_any_likes_gets_the_models_popular_list(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        resp = await client.get("/v1/users/stranger/recommendations?k=3&exclude=i0")
    assert resp.status_code == 200
    assert items_of(resp.json()) == world.item_ids[1:4]  # version_factory: popular = first 5


async def test_history_items_unknown_to_the_model_are_skipped(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    keys = UserKeys("gil", PARTITIONS)
    old = HistoryEntry(item_id="retired-item", type=EventType.LIKE, timestamp=1.0)
    redis_client.lpush(keys.history, old.encode())
    async with serve() as (_, client):
        only_unknown = await client.get("/v1/users/gil/recommendations?k=3")
        redis_client.lpush(keys.history, HistoryEntry("i2", EventType.LIKE, 2.0).encode())
        mixed = await client.get("/v1/users/gil/recommendations?k=3")
    assert only_unknown.status_code == 200 and len(only_unknown.json()["items"]) == 3
    assert mixed.status_code == 200 and len(mixed.json()["items"]) == 3
    assert items_of(mixed.json()) != items_of(only_unknown.json())


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/users/alice/recommendations?k=0", "k"),
        ("/v1/users/alice/recommendations?k=201", "k"),
        ("/v1/users/alice/recommendations?k=ten", "k"),
        ("/v1/users/alice/recommendations?include_seen=maybe", "include_seen"),
        ("/v1/users/al%20ice/recommendations", "user_id"),
        ("/v1/users/al%7Bice%7D/recommendations", "user_id"),
        ("/v1/users/" + "x" * 129 + "/recommendations", "user_id"),
        ("/v1/users/alice/recommendations?exclude=bad%7Cid", "exclude"),
        ("/v1/users/alice/recommendations?category=", "category"),
        ("/v1/items/i1/similar?k=0", "k"),
        ("/v1/items/i%20/similar", "item_id"),
    ],
)
async def test_bad_read_parameters_get_422_in_the_error_shape(
    serve: Serve, publish_version: Callable[..., Path], path: str, field: str
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        resp = await client.get(path)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_input" and err["message"]
    assert field in {e["field"] for e in err["details"]["errors"]}


async def test_similar_items_are_nearest_neighbours_without_the_item(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        resp = await client.get("/v1/items/i10/similar?k=6")
        missing = await client.get("/v1/items/no-such-item/similar")
    body = resp.json()
    scores = world.item_vectors @ world.item_vectors[10]
    scores[10] = -np.inf
    assert resp.status_code == 200 and body["model_version"] == 1
    assert items_of(body) == [world.item_ids[r] for r in np.argsort(-scores, kind="stable")[:6]]
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_unknown_routes_and_methods_answer_in_the_error_shape(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        nowhere = await client.get("/v2/nothing")
        wrong_method = await client.delete("/v1/feedback")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_health_readiness_and_openapi(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    async with serve() as (app, client):
        assert (await client.get("/healthz")).json() == {"status": "ok", "model_version": None}
        not_ready = await client.get("/readyz")
        recs = await client.get("/v1/users/alice/recommendations")
        publish_version(1)
        await app.state.reloader.check()
        ready = await client.get("/readyz")
        docs = await client.get("/openapi.json")
    assert not_ready.status_code == 503 and not_ready.json()["error"]["code"] == "not_ready"
    assert recs.status_code == 503 and recs.json()["error"]["code"] == "no_model_version"
    assert ready.status_code == 200 and ready.json()["model_version"] == 1
    assert "/v1/feedback" in docs.json()["paths"]
