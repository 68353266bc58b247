"""The catalog API against a real Redis and the real app: PUT / GET / DELETE /v1/items/{id},
POST /v1/items:batch; hidden and deleted items never served (recommendations, the category
scan, the popular fallback, similar) from the next request on, by every replica; feedback on a
catalog-only item; every refused write leaves Redis as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.service.svc_helpers import (
    PARTITIONS,
    Serve,
    event,
    items_in,
    items_of,
    recommended,
    redis_state,
)
from trainer.data.synthetic import SyntheticWorld
from veto import keys
from veto.cli.redis_server import RedisServer
from veto.events import HistoryEntry
from veto.keys import UserKeys

pytestmark = pytest.mark.anyio
KEY = {"X-API-Key": "s3cret"}


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def _likes(client: httpx.AsyncClient, user: str, items: list[str]) -> None:
    body = {"events": [event(user, i, "like") for i in items]}
    resp = await client.post("/v1/feedback", json=body, headers=KEY)
    assert resp.status_code == 200, resp.text


async def _similar(client: httpx.AsyncClient, item: str, k: int = 10) -> list[str]:
    resp = await client.get(f"/v1/items/{item}/similar", params={"k": k})
    assert resp.status_code == 200, resp.text
    return items_of(resp.json())


async def test_put_creates_and_updates_an_item_and_get_returns_it(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        created = await client.put(
            "/v1/items/fresh-1", json={"category": "c9", "labels": ["new", "hd"]}, headers=KEY
        )
        hidden = await client.put("/v1/items/fresh-1", json={"hidden": True}, headers=KEY)
        got = await client.get("/v1/items/fresh-1")
        learned = await client.put("/v1/items/i3", json={"labels": ["x"]}, headers=KEY)
        cleared = await client.put("/v1/items/i3", json={"category": None}, headers=KEY)
    assert created.status_code == 200
    assert created.json() == {
        "item_id": "fresh-1",
        "category": "c9",
        "labels": ["new", "hd"],
        "hidden": False,
        "learned": False,  # no model version has a vector for it yet
        "model_version": 1,
    }
    # A partial update keeps the fields it leaves out.
    assert hidden.status_code == 200 and got.status_code == 200
    assert got.json() == {**created.json(), "hidden": True}
    assert learned.json()["learned"] is True and learned.json()["category"] is None
    assert cleared.json()["labels"] == ["x"]
    record = redis_client.hgetall(keys.item("fresh-1"))
    assert (record["category"], record["hidden"]) == ("c9", "1")
    assert redis_client.hget(keys.CATALOG_WITHHELD, "fresh-1") == "hidden"
    assert redis_client.hget(keys.CATALOG_CATEGORIES, "fresh-1") == "c9"
    assert redis_client.hget(keys.CATALOG_CATEGORIES, "i3") is None
    assert redis_client.get(keys.CATALOG_GENERATION) == "4"  # one per write
    assert redis_client.xlen(keys.CATALOG_LOG) == 4


async def test_an_item_of_the_model_without_a_record_exists_with_the_model_category(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    """An empty catalog (a deployment bootstrapped before it existed) keeps the model's items."""
    publish_version(1)
    async with serve() as (_, client):
        known = await client.get("/v1/items/i7")
        unknown = await client.get("/v1/items/ghost")
    assert known.status_code == 200
    assert known.json() == {
        "item_id": "i7",
        "category": world.categories[7],
        "labels": [],
        "hidden": False,
        "learned": True,
        "model_version": 1,
    }
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_a_batch_upserts_every_item_in_one_generation(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    batch = {
        "items": [
            {"item_id": "b1", "category": "c1"},
            {"item_id": "b2", "labels": ["l"], "hidden": True},
            {"item_id": "b1", "labels": ["later"]},  # later entries apply on top
        ]
    }
    async with serve(api_key="s3cret") as (_, client):
        resp = await client.post("/v1/items:batch", json=batch, headers=KEY)
        b1 = (await client.get("/v1/items/b1")).json()
        b2 = (await client.get("/v1/items/b2")).json()
    assert resp.status_code == 200 and resp.json() == {"written": 3, "generation": 1}
    assert (b1["category"], b1["labels"], b1["hidden"]) == ("c1", ["later"], False)
    assert (b2["category"], b2["labels"], b2["hidden"]) == (None, ["l"], True)
    assert redis_client.xlen(keys.CATALOG_LOG) == 3


async def test_a_hidden_item_leaves_recommendations_similar_and_the_fallback_until_unhidden(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    liked = items_in(world, "c2")[:4]
    async with serve() as (app, client):
        await _likes(client, "ann", liked)
        before = await recommended(client, "ann")
        scan_before = await recommended(client, "ann", category="c2", k=5)
        stranger_before = await recommended(client, "stranger", k=3)  # the popular fallback
        near_before = await _similar(client, "i3")
        hide = {"hidden": True}
        for item in (before[0], scan_before[0], stranger_before[0], near_before[0]):
            assert (await client.put(f"/v1/items/{item}", json=hide)).status_code == 200
        after = await recommended(client, "ann")
        scan_after = await recommended(client, "ann", category="c2", k=5)
        stranger_after = await recommended(client, "stranger", k=3)
        near_after = await _similar(client, "i3")
        for item in (before[0], scan_before[0], stranger_before[0], near_before[0]):
            await client.put(f"/v1/items/{item}", json={"hidden": False})
        again = await recommended(client, "ann")
        near_again = await _similar(client, "i3")
        metrics = (await client.get("/metrics")).text
        assert app.state.services.holder.current.number == 1
    hidden = {before[0], scan_before[0], stranger_before[0], near_before[0]}
    for answer in (after, scan_after, stranger_after, near_after):
        assert not hidden & set(answer), answer
    # The rest moves up: nothing else changed.
    assert after == [i for i in before if i not in hidden] + after[len(after) - 1 :]
    assert len(after) == 10 and len(scan_after) == 5 and len(stranger_after) == 3
    assert again == before and near_again == near_before
    assert "veto_withheld_item_served_total 0.0" in metrics


async def test_a_deleted_item_is_never_served_is_not_found_and_refuses_feedback(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await _likes(client, "bo", items_in(world, "c5")[:3])
        top = (await recommended(client, "bo"))[0]
        deleted = await client.delete(f"/v1/items/{top}")
        recs = await recommended(client, "bo", k=50)
        near = await _similar(client, items_in(world, "c5")[0], k=50)
        got = await client.get(f"/v1/items/{top}")
        of_deleted = await client.get(f"/v1/items/{top}/similar")
        again = await client.delete(f"/v1/items/{top}")
        feedback = await client.post("/v1/feedback", json={"events": [event("bo", top, "like")]})
        back = await client.put(f"/v1/items/{top}", json={})
        recs_back = await recommended(client, "bo", k=50)
    assert deleted.status_code == 204 and deleted.content == b""
    assert top not in recs and top not in near
    assert got.status_code == 404 and of_deleted.status_code == 404
    assert again.status_code == 404
    assert feedback.status_code == 422
    assert feedback.json()["error"]["code"] == "unknown_item"
    assert back.status_code == 200 and back.json()["learned"] is True
    assert top in recs_back  # a PUT brings it back


async def test_a_second_replica_sees_a_hide_on_its_next_request(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, one), serve() as (_, two):
        first = await recommended(two, "stranger", k=3)
        near = await _similar(two, "i3", k=3)
        # Both replicas have served (and so loaded the catalog) before the write.
        assert await recommended(one, "stranger", k=3) == first
        await one.put(f"/v1/items/{first[0]}", json={"hidden": True})
        await one.delete(f"/v1/items/{near[0]}")
        on_two = await recommended(two, "stranger", k=3)
        near_on_two = await _similar(two, "i3", k=3)
    assert first[0] not in on_two and on_two[:2] == first[1:]
    assert near[0] not in near_on_two and near_on_two[:2] == near[1:]


async def test_feedback_on_an_item_only_the_catalog_has_is_accepted(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    body = {"events": [event("cy", "brand-new", "like"), event("cy", "i1", "click")]}
    async with serve() as (_, client):
        before = await client.post("/v1/feedback", json=body)
        await client.put("/v1/items/brand-new", json={"category": "c1"})
        after = await client.post("/v1/feedback", json=body)
        await client.put("/v1/items/brand-new", json={"hidden": True})
        hidden = await client.post(
            "/v1/feedback", json={"events": [event("cy", "brand-new", "skip")]}
        )
        recs = await client.get("/v1/users/cy/recommendations?k=5")
    assert before.status_code == 422
    assert [e["index"] for e in before.json()["error"]["details"]["errors"]] == [0]
    assert after.status_code == 200 and after.json()["accepted"] == 2
    assert hidden.status_code == 200  # a hidden item exists: it is only not served
    history = redis_client.lrange(UserKeys("cy", PARTITIONS).history, 0, -1)
    assert [HistoryEntry.decode(h).item_id for h in history] == ["brand-new", "i1", "brand-new"]
    assert recs.status_code == 200  # a history item without a vector is skipped


async def test_the_category_filter_uses_the_catalog_category(
    serve: Serve, publish_version: Callable[..., Path], world: SyntheticWorld
) -> None:
    publish_version(1)
    c1, c2 = items_in(world, "c1"), items_in(world, "c2")
    moved = c1[0]
    async with serve() as (_, client):
        await _likes(client, "di", c1[1:3])
        before_c1 = await recommended(client, "di", category="c1", k=200)
        before_c2 = await recommended(client, "di", category="c2", k=200)
        await client.put(f"/v1/items/{moved}", json={"category": "c2"})
        after_c1 = await recommended(client, "di", category="c1", k=200)
        after_c2 = await recommended(client, "di", category="c2", k=200)
    assert moved in before_c1 and moved not in before_c2
    assert moved not in after_c1 and moved in after_c2
    assert set(after_c2) == set(c2) | {moved}


async def test_while_redis_is_down_the_last_catalog_state_is_served(
    serve: Serve, publish_version: Callable[..., Path], redis_server: RedisServer
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        first = await recommended(client, "stranger", k=3)
        await client.put(f"/v1/items/{first[0]}", json={"hidden": True})
        seen = await recommended(client, "stranger", k=3)  # this replica has seen the hide
        redis_server.stop(kill=True)
        try:
            down = await client.get("/v1/users/stranger/recommendations?k=3")
            near = await client.get("/v1/items/i3/similar?k=3")
            write = await client.put("/v1/items/i9", json={"hidden": True})
            read = await client.get("/v1/items/i9")
        finally:
            redis_server.start()
    assert first[0] not in seen
    # Redis down: answers still leave out what the last catalog state seen withholds.
    assert down.status_code == 200 and down.json()["degraded"] is True
    assert items_of(down.json()) == seen
    assert near.status_code == 200
    assert write.status_code == 503 and write.headers["Retry-After"] == "1"
    assert read.status_code == 503


# --- bad input: refused, and Redis exactly as it was -------------------------------------


async def test_deleting_an_unknown_item_is_404_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], raw_redis: redis.Redis
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await client.put("/v1/items/kept", json={"category": "c1"})
        before = redis_state(raw_redis)
        unknown = await client.delete("/v1/items/ghost")
        after = redis_state(raw_redis)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert after == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"category": ""}, {"category"}),
        ({"category": "x" * 129}, {"category"}),
        ({"category": 3}, {"category"}),
        ({"labels": "a"}, {"labels"}),
        ({"labels": ["ok", ""]}, {"labels"}),
        ({"labels": [f"l{n}" for n in range(33)]}, {"labels"}),
        ({"hidden": "yes"}, {"hidden"}),
        ({"hidden": 1}, {"hidden"}),
        ({"colour": "red"}, {"colour"}),
        ({"category": "", "hidden": "no"}, {"category", "hidden"}),
    ],
)
async def test_malformed_metadata_is_422_with_every_bad_field_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    raw_redis: redis.Redis,
    body: dict[str, Any],
    fields: set[str],
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        before = redis_state(raw_redis)
        resp = await client.put("/v1/items/i1", json=body)
        after = redis_state(raw_redis)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_input"
    errors = resp.json()["error"]["details"]["errors"]
    assert {e["field"] for e in errors} == fields and all(e["message"] for e in errors)
    assert after == before


async def test_a_batch_with_one_bad_item_names_it_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], raw_redis: redis.Redis
) -> None:
    publish_version(1)
    batch = {
        "items": [
            {"item_id": "ok-1", "category": "c1"},
            {"item_id": "bad id", "hidden": "maybe"},
            {"item_id": "ok-2", "labels": [7]},
        ]
    }
    async with serve() as (_, client):
        before = redis_state(raw_redis)
        resp = await client.post("/v1/items:batch", json=batch)
        empty = await client.post("/v1/items:batch", json={"items": []})
        after = redis_state(raw_redis)
    assert resp.status_code == 422
    errors = resp.json()["error"]["details"]["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {
        (1, "item_id"),
        (1, "hidden"),
        (2, "labels.0"),
    }
    assert empty.status_code == 422
    assert after == before


async def test_an_oversized_batch_is_413_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], raw_redis: redis.Redis
) -> None:
    publish_version(1)
    async with serve(catalog_max_batch=3) as (_, client):
        before = redis_state(raw_redis)
        over = await client.post(
            "/v1/items:batch", json={"items": [{"item_id": f"o{n}"} for n in range(4)]}
        )
        after = redis_state(raw_redis)
        at_limit = await client.post(
            "/v1/items:batch", json={"items": [{"item_id": f"o{n}"} for n in range(3)]}
        )
    assert over.status_code == 413 and over.json()["error"]["code"] == "too_large"
    assert after == before
    assert at_limit.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/items/i1", {"hidden": True}),
        ("DELETE", "/v1/items/i1", None),
        ("POST", "/v1/items:batch", {"items": [{"item_id": "i1", "hidden": True}]}),
    ],
)
async def test_catalog_writes_need_the_api_key(
    serve: Serve,
    publish_version: Callable[..., Path],
    raw_redis: redis.Redis,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        before = redis_state(raw_redis)
        missing = await client.request(method, path, json=body)
        wrong = await client.request(method, path, json=body, headers={"X-API-Key": "guess"})
        after = redis_state(raw_redis)
        right = await client.request(method, path, json=body, headers=KEY)
        read = await client.get("/v1/items/i1")  # reads need no key
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert after == before
    assert right.status_code in (200, 204)
    assert read.status_code == (404 if method == "DELETE" else 200)


@pytest.mark.parametrize("item", ["a%7Bb%7D", "a%7Cb", "x" * 129, "%C3%A9"])
async def test_a_bad_item_id_is_422_before_any_redis_key(
    serve: Serve, publish_version: Callable[..., Path], raw_redis: redis.Redis, item: str
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        before = redis_state(raw_redis)
        put = await client.put(f"/v1/items/{item}", json={"hidden": True})
        delete = await client.delete(f"/v1/items/{item}")
        get = await client.get(f"/v1/items/{item}")
        after = redis_state(raw_redis)
    assert [r.status_code for r in (put, delete, get)] == [422, 422, 422]
    assert after == before


async def test_a_method_the_item_path_does_not_serve_names_all_it_does(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        resp = await client.post("/v1/items/i1", json={})
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, PUT"
