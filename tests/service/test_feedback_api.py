"""POST /v1/feedback: atomic, idempotent batches into the real Redis; every bad input is
rejected with nothing written."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import BOTH
from tests.service.svc_helpers import PARTITIONS, Serve, event, written_keys
from veto.events import EventType, FeedbackEvent, HistoryEntry
from veto.keys import UserKeys

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("redis_backend", BOTH, indirect=True),
]


async def test_accepted_batch_lands_in_stream_history_sets_and_popular(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    batch = [
        event("alice", "i1", "like", event_id="e1", timestamp=1_700_000_000.5),
        event("alice", "i2", "dislike", event_id="e2"),
        event("alice", "i3", "click", event_id="e3"),
    ]
    before = time.time()
    async with serve() as (_, client):
        resp = await client.post("/v1/feedback", json={"events": batch})
    assert resp.status_code == 200 and resp.json() == {"accepted": 3, "duplicates": 0}
    uk = UserKeys("alice", PARTITIONS)
    history = [HistoryEntry.decode(r) for r in redis_client.lrange(uk.history, 0, -1)]
    assert [(h.item_id, h.type) for h in history] == [
        ("i3", EventType.CLICK),
        ("i2", EventType.DISLIKE),
        ("i1", EventType.LIKE),
    ]
    assert history[2].timestamp == 1_700_000_000.5
    assert redis_client.smembers(uk.liked) == {"i1"}
    assert redis_client.smembers(uk.disliked) == {"i2"}
    logged = [FeedbackEvent.from_fields(f) for _, f in redis_client.xrange(uk.stream)]
    assert [e.event_id for e in logged] == ["e1", "e2", "e3"]
    assert all(before <= e.ingest_time <= time.time() for e in logged)
    assert logged[1].timestamp == logged[1].ingest_time  # no timestamp: the server's clock
    pop = [k for k in redis_client.keys(f"veto:{{p{uk.partition}}}:pop:*")]
    assert len(pop) == 1 and redis_client.zrange(pop[0], 0, -1, withscores=True) == [("i1", 1.0)]


async def test_a_retried_batch_is_not_counted_twice(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    batch = {"events": [event("bob", "i1", "like", event_id="r1"), event("bob", "i2", "skip")]}
    async with serve() as (_, client):
        first = (await client.post("/v1/feedback", json=batch)).json()
        batch["events"][1]["event_id"] = "r2"
        second = (await client.post("/v1/feedback", json=batch)).json()
        third = (await client.post("/v1/feedback", json=batch)).json()
    assert first == {"accepted": 2, "duplicates": 0}
    assert second == {"accepted": 1, "duplicates": 1}  # r1 again, r2 new
    assert third == {"accepted": 0, "duplicates": 2}
    uk = UserKeys("bob", PARTITIONS)
    assert redis_client.xlen(uk.stream) == 3
    assert redis_client.llen(uk.history) == 3
    assert 0 < redis_client.ttl(uk.dedupe("r1")) <= 7 * 86_400


async def test_events_without_an_id_get_one_from_the_server(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        for _ in range(2):
            body = {"events": [event("cy", "i1", "click")]}
            assert (await client.post("/v1/feedback", json=body)).json()["accepted"] == 1
    ids = {f["event_id"] for _, f in redis_client.xrange(UserKeys("cy", PARTITIONS).stream)}
    assert len(ids) == 2


async def test_an_event_without_an_id_but_with_its_timestamp_is_deduped_on_retry(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    sent = event("cy", "i1", "like", timestamp=1_700_000_000.25)
    other = event("cy", "i1", "like", timestamp=1_700_000_001.0)  # a later like: new
    async with serve() as (_, client):
        first = (await client.post("/v1/feedback", json={"events": [sent]})).json()
        retry = (await client.post("/v1/feedback", json={"events": [sent, other]})).json()
    assert first == {"accepted": 1, "duplicates": 0}
    assert retry == {"accepted": 1, "duplicates": 1}
    assert redis_client.xlen(UserKeys("cy", PARTITIONS).stream) == 2


async def test_a_dislike_replaces_a_like(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await client.post("/v1/feedback", json={"events": [event("dee", "i4", "like")]})
        await client.post("/v1/feedback", json={"events": [event("dee", "i4", "dislike")]})
    uk = UserKeys("dee", PARTITIONS)
    assert redis_client.smembers(uk.liked) == set()
    assert redis_client.smembers(uk.disliked) == {"i4"}


async def test_one_unknown_item_rejects_the_whole_batch_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    batch = [event("eve", "i1", "like"), event("eve", "ghost", "like"), event("fred", "i2", "like")]
    async with serve() as (_, client):
        resp = await client.post("/v1/feedback", json={"events": batch})
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "unknown_item"
    assert [(e["index"], e["field"]) for e in err["details"]["errors"]] == [(1, "item_id")]
    assert written_keys(redis_client) == []
    assert "veto_feedback_rejected_total 1.0" in metrics


_NOW = time.time()
BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("bad type", event("u", "i1", "love"), "type"),
    ("numeric type", event("u", "i1", 1), "type"),
    ("user id with a space", event("u 1", "i1", "like"), "user_id"),
    ("user id with a brace", event("u{1}", "i1", "like"), "user_id"),
    ("user id with a bar", event("u|1", "i1", "like"), "user_id"),
    ("user id too long", event("u" * 129, "i1", "like"), "user_id"),
    ("empty user id", event("", "i1", "like"), "user_id"),
    ("item id with a newline", event("u", "i1\n", "like"), "item_id"),
    ("event id with a space", event("u", "i1", "like", event_id="a b"), "event_id"),
    ("negative timestamp", event("u", "i1", "like", timestamp=-5), "timestamp"),
    ("text timestamp", event("u", "i1", "like", timestamp="yesterday"), "timestamp"),
    ("future timestamp", event("u", "i1", "like", timestamp=_NOW + 10 * 86_400), "timestamp"),
    ("missing user", {"item_id": "i1", "type": "like"}, "user_id"),
    ("missing type", {"user_id": "u", "item_id": "i1"}, "type"),
    ("unknown field", event("u", "i1", "like", rating=5), "rating"),
    ("user id not a string", event(7, "i1", "like"), "user_id"),
]


@pytest.mark.parametrize(("case", "bad", "field"), BAD_EVENTS, ids=[c for c, _, _ in BAD_EVENTS])
async def test_a_malformed_event_rejects_the_batch_with_its_index_and_field(
    serve: Serve,
    publish_version: Callable[..., Path],
    redis_client: redis.Redis,
    case: str,
    bad: dict[str, Any],
    field: str,
) -> None:
    publish_version(1)
    batch = [event("ok", "i1", "like"), bad]
    async with serve() as (_, client):
        resp = await client.post("/v1/feedback", json={"events": batch})
    assert resp.status_code == 422, case
    errors = resp.json()["error"]["details"]["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, field)}, errors
    assert all(e["message"] for e in errors)
    assert written_keys(redis_client) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": []}',
        b'{"events": "like"}',
        b'{"events": [42]}',
        b"{}",
        b"[]",
        b"not json",
        b"\xff\xfe\x00",  # not UTF-8
        b'{"events": [\xc3\x28]}',  # invalid UTF-8 inside the JSON
        b'{"events": [{"user_id": "u", "item_id": "i1", "type": "like", "timestamp": NaN}]}',
        b"",
    ],
)
async def test_a_malformed_body_gets_422_and_writes_nothing(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis, body: bytes
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        resp = await client.post(
            "/v1/feedback", content=body, headers={"content-type": "application/json"}
        )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_input"
    assert written_keys(redis_client) == []


async def test_a_batch_over_the_limit_gets_413(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(max_batch=3) as (_, client):
        at_limit = await client.post(
            "/v1/feedback", json={"events": [event(f"u{n}", "i1", "like") for n in range(3)]}
        )
        over = await client.post(
            "/v1/feedback", json={"events": [event(f"v{n}", "i1", "like") for n in range(4)]}
        )
    assert at_limit.status_code == 200
    assert over.status_code == 413 and over.json()["error"]["code"] == "too_large"
    assert not [k for k in written_keys(redis_client) if ":u:v" in k]


async def test_a_body_over_the_byte_limit_gets_413_even_when_chunked(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    events = [event(f"user{n}", "i1", "like") for n in range(40)]
    raw = json.dumps({"events": events}).encode()
    assert len(raw) > 2048

    async def chunks() -> Any:
        for start in range(0, len(raw), 500):
            yield raw[start : start + 500]

    async with serve(max_body_bytes=2048) as (_, client):
        declared = await client.post("/v1/feedback", content=raw)
        streamed = await client.post("/v1/feedback", content=chunks())
    for resp in (declared, streamed):
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "too_large"
    assert written_keys(redis_client) == []


async def test_the_api_key_is_required_when_configured(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    body = {"events": [event("kay", "i1", "like")]}
    async with serve(api_key="s3cret") as (_, client):
        missing = await client.post("/v1/feedback", json=body)
        wrong = await client.post("/v1/feedback", json=body, headers={"X-API-Key": "guess"})
        assert written_keys(redis_client) == []
        right = await client.post("/v1/feedback", json=body, headers={"X-API-Key": "s3cret"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert right.status_code == 200 and right.json()["accepted"] == 1
