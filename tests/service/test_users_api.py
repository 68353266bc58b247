"""The user API against a real Redis and the real app: DELETE /v1/users/{id} erases
everything listed (keys, dedupe markers, stream entries) and the user gets the cold answer;
GET /v1/users/{id}/history pages cover everything exactly once; withdraw takes a like or
dislike back, latest decision by timestamp wins; every refused request writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.service.svc_helpers import PARTITIONS, Serve, event, recommended, redis_state
from veto import keys, partitions
from veto.keys import UserKeys

pytestmark = pytest.mark.anyio
KEY = {"X-API-Key": "s3cret"}


def _user_entries(client: redis.Redis, user: str) -> list[str]:
    stream = UserKeys(user, PARTITIONS).stream
    return [i for i, f in client.xrange(stream) if f.get("user_id") == user]


async def _send(client: httpx.AsyncClient, *events: dict[str, Any]) -> None:
    resp = await client.post("/v1/feedback", json={"events": list(events)}, headers=KEY)
    assert resp.status_code == 200, resp.text


async def test_erase_removes_keys_markers_and_stream_entries_and_the_user_gets_the_cold_answer(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(
            client,
            event("ann", "i1", "like", event_id="a1"),
            event("ann", "i2", "dislike", event_id="a2"),
            event("ann", "i3", "click", event_id="a3"),
            event("bob", "i1", "like", event_id="b1"),
        )
        cold = await recommended(client, "nobody")
        assert await recommended(client, "ann") != cold  # personalised before
        erased = await client.delete("/v1/users/ann", headers=KEY)
        after = await recommended(client, "ann")
        again = await client.delete("/v1/users/ann", headers=KEY)
        # Forgotten means forgotten: the same event id is new again.
        resent = await client.post(
            "/v1/feedback",
            json={"events": [event("ann", "i4", "like", event_id="a1")]},
            headers=KEY,
        )
    assert erased.status_code == 200
    assert erased.json() == {
        "user_id": "ann",
        "keys_deleted": 5,  # history, liked, disliked, decided, events
        "stream_entries_deleted": 3,
        "dedupe_markers_deleted": 3,
    }
    assert again.json() == {
        "user_id": "ann",
        "keys_deleted": 0,
        "stream_entries_deleted": 0,
        "dedupe_markers_deleted": 0,
    }
    assert after == cold
    assert resent.json() == {"accepted": 1, "duplicates": 0}


async def test_erase_leaves_nothing_of_the_user_and_everything_of_others(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, *(event("bob", f"i{n}", "like") for n in range(3)))
        bob_before = redis_state(redis_client)
        await _send(
            client,
            event("ann", "i1", "like"),
            event("ann", "i1", "withdraw"),
            event("ann", "i5", "dislike"),
        )
        resp = await client.delete("/v1/users/ann", headers=KEY)
    assert resp.status_code == 200
    uk = UserKeys("ann", PARTITIONS)
    assert [k for k in redis_client.keys("*") if "ann" in k] == []
    # The record the trainer purges by (removed once its next version is published).
    assert redis_client.zscore(uk.erased, "ann") is not None
    assert _user_entries(redis_client, "ann") == []
    assert _user_entries(redis_client, "bob") != []
    after = redis_state(redis_client)
    pop = {k for k in after if ":pop:" in k}  # ann's like counts in the (anonymous) counter
    expected = {k: v for k, v in bob_before.items() if k not in pop}
    # ann's partition stream stays as an empty stream (XDEL keeps the key and its last id).
    assert uk.stream not in bob_before and redis_client.xlen(uk.stream) == 0
    skip = {*pop, uk.erased, uk.stream}
    assert {k: v for k, v in after.items() if k not in skip} == expected


async def test_erase_deletes_entries_written_before_the_index_the_trainer_has_not_trained_on(
    redis_client: redis.Redis, serve: Serve, publish_version: Callable[..., Path]
) -> None:
    """Entries of an older service (no per-user index): pending or never delivered ones go,
    an entry the trainer already acked stays (documented limit)."""
    publish_version(1)
    partitions.check(redis_client, PARTITIONS)  # recorded, as in a running deployment
    uk = UserKeys("ann", PARTITIONS)
    fields = {"event_id": "x", "user_id": "ann", "item_id": "i1", "type": "like"}
    trained = redis_client.xadd(uk.stream, {**fields, "ts": "1.0", "ingest": "1.0"})
    redis_client.xgroup_create(uk.stream, keys.CONSUMER_GROUP, id="0")
    redis_client.xreadgroup(keys.CONSUMER_GROUP, "t", {uk.stream: ">"})
    redis_client.xack(uk.stream, keys.CONSUMER_GROUP, trained)
    pending = redis_client.xadd(uk.stream, {**fields, "ts": "2.0", "ingest": "2.0"})
    redis_client.xreadgroup(keys.CONSUMER_GROUP, "t", {uk.stream: ">"})
    waiting = redis_client.xadd(uk.stream, {**fields, "ts": "3.0", "ingest": "3.0"})
    other = redis_client.xadd(uk.stream, {**fields, "user_id": "ann2", "ts": "4", "ingest": "4"})
    async with serve(api_key="s3cret") as (_, client):
        resp = await client.delete("/v1/users/ann", headers=KEY)
    assert resp.json()["stream_entries_deleted"] == 2
    left = [i for i, _ in redis_client.xrange(uk.stream)]
    assert trained in left and other in left
    assert pending not in left and waiting not in left


async def _all_pages(client: httpx.AsyncClient, user: str, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = await client.get(f"/v1/users/{user}/history", params=params, headers=KEY)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["history"]) + len(body["liked"]) + len(body["disliked"]) <= limit
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def _records(pages: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for p in pages:
        out += [("h", h["item_id"], h["type"], repr(h["timestamp"])) for h in p["history"]]
        out += [("l", i) for i in p["liked"]] + [("d", i) for i in p["disliked"]]
    return out


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 1000])
async def test_history_pages_cover_everything_exactly_once(
    serve: Serve, publish_version: Callable[..., Path], limit: int
) -> None:
    publish_version(1)
    events = [event("ann", f"i{n}", "like", timestamp=100.0 + n) for n in range(5)]
    events += [event("ann", f"i{n}", "dislike", timestamp=200.0 + n) for n in (10, 11)]
    events += [event("ann", "i20", "click", timestamp=300.0)]
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, *events)
        pages = await _all_pages(client, "ann", limit)
    records = _records(pages)
    assert len(records) == len(set(records)) == 8 + 5 + 2
    history = [r for r in records if r[0] == "h"]
    assert [float(r[3]) for r in history] == sorted((float(r[3]) for r in history), reverse=True)
    assert [r[1] for r in records if r[0] == "l"] == sorted(f"i{n}" for n in range(5))
    assert [r[1] for r in records if r[0] == "d"] == ["i10", "i11"]
    assert ("h", "i20", "click", "300.0") in records


async def test_a_write_between_pages_returns_no_record_twice(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, *(event("ann", f"i{n}", "click", timestamp=10.0 + n) for n in range(6)))
        first = (await client.get("/v1/users/ann/history?limit=3", headers=KEY)).json()
        await _send(client, event("ann", "i40", "click", timestamp=99.0))
        second = await client.get(
            "/v1/users/ann/history",
            params={"limit": 3, "cursor": first["next_cursor"]},
            headers=KEY,
        )
    got = [h["item_id"] for h in first["history"] + second.json()["history"]]
    assert got == ["i5", "i4", "i3", "i2", "i1", "i0"]


async def test_like_then_withdraw_leaves_the_set_neutralises_the_entry_and_stops_excluding(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    likes = [
        event(u, f"i{n}", "like", timestamp=10.0 + n) for n in range(3) for u in ("ann", "twin")
    ]
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, *likes)
        twin = await recommended(client, "twin")
        target = twin[0]  # the item the twin is recommended first
        await _send(client, event("ann", target, "like", timestamp=20.0))
        liked = await recommended(client, "ann")
        await _send(client, event("ann", target, "withdraw", timestamp=21.0))
        data = (await client.get("/v1/users/ann/history", headers=KEY)).json()
        ann = await recommended(client, "ann")
        # The same for a dislike: no longer blocked, no longer a penalty source.
        await _send(client, event("twin", target, "dislike", timestamp=30.0))
        disliked = await recommended(client, "twin")
        await _send(client, event("twin", target, "withdraw", timestamp=31.0))
        undone = await recommended(client, "twin")
    uk = UserKeys("ann", PARTITIONS)
    assert target not in liked  # a liked item is not recommended again
    assert not redis_client.sismember(uk.liked, target)
    assert data["liked"] == ["i0", "i1", "i2"]
    assert data["history"][0] == {"item_id": target, "type": "withdrawn", "timestamp": 20.0}
    # Neutral: ann's input is the twin's (same likes), so is her answer, the target included.
    assert ann == twin
    assert target not in disliked and disliked != twin
    assert undone == twin


async def test_out_of_order_decisions_in_one_batch_the_latest_by_timestamp_wins(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(
            client,
            event("ann", "i1", "like", timestamp=300.0),
            event("ann", "i1", "dislike", timestamp=100.0),
            event("ann", "i1", "withdraw", timestamp=200.0),
            event("ann", "i2", "withdraw", timestamp=200.0),
            event("ann", "i2", "like", timestamp=100.0),  # older than its withdraw
            event("ann", "i3", "like", timestamp=100.0),
            event("ann", "i3", "dislike", timestamp=300.0),
            event("ann", "i3", "like", timestamp=200.0),
        )
        data = (await client.get("/v1/users/ann/history", headers=KEY)).json()
    assert data["liked"] == ["i1"] and data["disliked"] == ["i3"]
    kinds = {(h["item_id"], h["timestamp"]): h["type"] for h in data["history"]}
    assert kinds[("i1", 300.0)] == "like"
    assert kinds[("i1", 100.0)] == "withdrawn"  # before the withdraw at 200
    assert kinds[("i2", 100.0)] == "withdrawn"
    assert (kinds[("i3", 100.0)], kinds[("i3", 300.0)]) == ("like", "dislike")


async def test_out_of_order_decisions_across_batches_the_latest_by_timestamp_wins(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, event("ann", "i1", "dislike", timestamp=500.0))
        await _send(client, event("ann", "i1", "like", timestamp=400.0))  # older: no change
        first = (await client.get("/v1/users/ann/history", headers=KEY)).json()
        await _send(client, event("ann", "i1", "withdraw", timestamp=450.0))  # older too
        second = (await client.get("/v1/users/ann/history", headers=KEY)).json()
        await _send(client, event("ann", "i1", "withdraw", timestamp=600.0))
        third = (await client.get("/v1/users/ann/history", headers=KEY)).json()
    assert (first["liked"], first["disliked"]) == ([], ["i1"])
    assert (second["liked"], second["disliked"]) == ([], ["i1"])
    assert [h["type"] for h in second["history"]] == ["withdrawn", "dislike"]  # like@400 < 450
    assert (third["liked"], third["disliked"]) == ([], [])
    assert [h["type"] for h in third["history"]] == ["withdrawn", "withdrawn"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("DELETE", "/v1/users/ann"),
        ("GET", "/v1/users/ann/history"),
        ("DELETE", "/v1/users/a%7Bb"),  # the key check comes first, whatever the id
    ],
)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
async def test_user_routes_need_the_api_key_and_write_nothing_without_it(
    serve: Serve,
    publish_version: Callable[..., Path],
    redis_client: redis.Redis,
    method: str,
    url: str,
    headers: dict[str, str],
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, event("ann", "i1", "like"))
        before = redis_state(redis_client)
        resp = await client.request(method, url, headers=headers)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    assert redis_state(redis_client) == before


@pytest.mark.parametrize(
    "url",
    [
        "DELETE /v1/users/a%7Bb",  # a brace would break the hash tag
        "DELETE /v1/users/a%7Cb",  # "|" separates dedupe keys
        "DELETE /v1/users/" + "x" * 129,
        "GET /v1/users/a%7Cb/history",
        "GET /v1/users/ann/history?limit=0",
        "GET /v1/users/ann/history?limit=1001",
        "GET /v1/users/ann/history?limit=ten",
        "GET /v1/users/ann/history?cursor=%21%21",
        "GET /v1/users/ann/history?cursor=WyJ4IixudWxsLDBd",  # ["x",null,0]: no such section
        "GET /v1/users/ann/history?cursor=" + "A" * 1025,
    ],
)
async def test_bad_input_is_422_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis, url: str
) -> None:
    publish_version(1)
    method, path = url.split(" ", 1)
    async with serve(api_key="s3cret") as (_, client):
        await _send(client, event("ann", "i1", "like"))
        before = redis_state(redis_client)
        resp = await client.request(method, path, headers=KEY)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_input"
    assert redis_state(redis_client) == before
