"""The store's batched read: every user's state, in order, in one pipeline, also after Redis
lost its script cache; Redis down is StoreUnavailable."""

from __future__ import annotations

import pytest
import redis

from service.feedback_store import FeedbackStore
from veto.cli.redis_server import RedisServer
from veto.errors import StoreUnavailable
from veto.events import EventType, HistoryEntry
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
