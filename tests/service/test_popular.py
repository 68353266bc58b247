"""The popular-items cache: one refresh at a time, in the background once there is a list,
the last good list while Redis is down."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from service.feedback_store import FeedbackStore, day_of
from service.popular import PopularCache
from veto import keys
from veto.cli.redis_server import RedisServer

pytestmark = pytest.mark.anyio


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _refreshed(cache: PopularCache, item: str) -> list[tuple[str, float]]:
    """The cache's list once its background refresh brought ``item`` to the top."""
    for _ in range(500):
        found = await cache.get()
        if found and found[0][0] == item:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{item} never reached the top of the cached list")


async def test_counts_are_summed_across_partitions_and_cached_until_the_ttl(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    today = day_of(time.time())
    redis_client.zadd(keys.popular(0, today), {"a": 2, "b": 1})
    redis_client.zadd(keys.popular(3, today), {"b": 5})
    clock = _Clock()
    cache = PopularCache(store, ttl_seconds=10, days=7, clock=clock)
    assert await cache.get() == [("b", 6.0), ("a", 2.0)]
    redis_client.zadd(keys.popular(1, today), {"c": 100})
    assert (await cache.get())[0] == ("b", 6.0)  # cached
    clock.now = 11
    # Stale: served at once while the refresh runs in the background.
    assert (await cache.get())[0] == ("b", 6.0)
    assert (await _refreshed(cache, "c"))[0] == ("c", 100.0)


async def test_concurrent_misses_refresh_once_and_redis_down_keeps_the_last_list(
    store: FeedbackStore, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    redis_client.zadd(keys.popular(2, day_of(time.time())), {"x": 3})
    clock = _Clock()
    cache = PopularCache(store, ttl_seconds=1, days=1, clock=clock)
    results = await asyncio.gather(*(cache.get() for _ in range(5)))
    # The first caller refreshed; the others did not wait for it, nor start their own.
    assert results[0] == [("x", 3.0)] and all(r in ([], [("x", 3.0)]) for r in results)
    assert results.count([]) == 4
    clock.now = 5
    redis_server.stop(kill=True)
    try:
        assert await cache.get() == [("x", 3.0)]
    finally:
        redis_server.start()
