"""The store's batched read: every user's state, in order, in one pipeline, also after Redis
lost its script cache; Redis down is StoreUnavailable. Its batched write: users sharing keys,
a repeated event id and a change of mind within one batch land as if written one by one."""

from __future__ import annotations

import pytest
import redis

from service.feedback_store import FeedbackStore, day_of
from veto import keys
from veto.cli.redis_server import RedisServer
from veto.errors import StoreUnavailable
from veto.events import EventType, FeedbackEvent, HistoryEntry
from veto.keys import UserKeys

pytestmark = pytest.mark.anyio


def _seed(client: redis.Redis, partitions: int) -> None:
    ann = UserKeys("ann", partitions)
    for n in range(12):  # more than the store's history length (10)
        client.lpush(ann.history, HistoryEntry(f"i{n}", EventType.LIKE, float(n)).encode())
    client.sadd(ann.liked, "i1", "i2")
    bob = UserKeys("bob", partitions)
    client.lpush(bob.history, HistoryEntry("i7", EventType.DISLIKE, 1.0).encode())
    client.sadd(bob.disliked, "i7")


async def test_read_users_answers_each_user_in_order_like_read_user(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    _seed(redis_client, store.partitions)
    users = ["bob", "nobody", "ann", "bob"]
    states = await store.read_users(users)
    assert states == [await store.read_user(u) for u in users]
    bob, nobody, ann, _ = states
    assert bob.disliked == {"i7"} and not bob.liked and len(bob.history) == 1
    assert not (nobody.history or nobody.liked or nobody.disliked)
    assert ann.liked == {"i1", "i2"}
    assert [HistoryEntry.decode(e).item_id for e in ann.history] == [
        f"i{n}" for n in range(11, 1, -1)
    ]  # newest first, at most history_len
    assert await store.read_users([]) == []


async def test_read_users_reloads_a_flushed_script_cache(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    _seed(redis_client, store.partitions)
    before = await store.read_users(["ann", "bob"])
    redis_client.script_flush()  # as a restarted Redis without persistence of scripts
    assert await store.read_users(["ann", "bob"]) == before


async def test_read_users_is_store_unavailable_while_redis_is_down(
    store: FeedbackStore, redis_server: RedisServer
) -> None:
    redis_server.stop(kill=True)
    try:
        with pytest.raises(StoreUnavailable):
            await store.read_users(["ann", "bob"])
    finally:
        redis_server.start()


def _event(event_id: str, user: str, item: str, kind: EventType, ts: float) -> FeedbackEvent:
    return FeedbackEvent(event_id, user, item, kind, timestamp=ts, ingest_time=1_700_000_000.5)


async def test_write_batch_applies_events_in_order_over_shared_keys(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    batch = [
        _event("e1", "ann", "i1", EventType.LIKE, 1.0),
        _event("e2", "bob", "i1", EventType.LIKE, 2.0),
        _event("e3", "ann", "i2", EventType.LIKE, 3.0),
        _event("e1", "ann", "i9", EventType.DISLIKE, 4.0),  # a repeated id: skipped
        _event("e4", "ann", "i1", EventType.DISLIKE, 5.0),  # ann changes her mind on i1
        _event("e5", "user.with:odd@chars-1", "i3", EventType.CLICK, 6.0),
    ]
    result = await store.write_batch(batch)
    assert (result.accepted, result.duplicates) == (5, 1)
    assert [ev.event_id for ev in result.new_events] == ["e1", "e2", "e3", "e4", "e5"]
    assert result.accepted_by_type == {EventType.LIKE: 3, EventType.DISLIKE: 1, EventType.CLICK: 1}
    ann, bob = await store.read_users(["ann", "bob"])
    assert ann.liked == {"i2"} and ann.disliked == {"i1"}
    assert [HistoryEntry.decode(e) for e in ann.history] == [
        HistoryEntry("i1", EventType.DISLIKE, 5.0),
        HistoryEntry("i2", EventType.LIKE, 3.0),
        HistoryEntry("i1", EventType.LIKE, 1.0),
    ]
    assert bob.liked == {"i1"} and not bob.disliked
    odd = await store.read_user("user.with:odd@chars-1")
    assert [HistoryEntry.decode(e).item_id for e in odd.history] == ["i3"]
    assert not (odd.liked or odd.disliked)
    logged = [
        FeedbackEvent.from_fields(fields)
        for stream in keys.streams(store.partitions)
        for _, fields in redis_client.xrange(stream)
    ]
    assert sorted(logged, key=lambda ev: ev.event_id) == list(result.new_events)
    likes: dict[str, float] = {}
    for p in range(store.partitions):
        day = keys.popular(p, day_of(1_700_000_000.5))
        for item, n in redis_client.zrange(day, 0, -1, withscores=True):
            likes[item] = likes.get(item, 0.0) + n
    assert likes == {"i1": 2.0, "i2": 1.0}  # likes counted as they came, as before
    again = await store.write_batch(batch)
    assert (again.accepted, again.duplicates) == (0, 6) and not again.new_events
