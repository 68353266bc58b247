"""The popular-items fallback, cached in-process for a few seconds so unknown users do not
cost one Redis pipeline over every partition and day per request."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.feedback_store import FeedbackStore
from veto.errors import StoreUnavailable


class PopularCache:
    """Likes per item over the last days, summed across partitions, refreshed after ``ttl``."""

    def __init__(
        self,
        store: FeedbackStore,
        *,
        ttl_seconds: float,
        days: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._days = days
        self._clock = clock
        self._items: list[tuple[str, float]] = []
        self._fetched_at: float | None = None
        self._refreshing = False

    async def get(self) -> list[tuple[str, float]]:
        """The cached list, refreshed when stale; the last good list when Redis is down or
        while another request is refreshing it (one refresh at a time, no herd)."""
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self._ttl
        if fresh or self._refreshing:
            return self._items
        self._refreshing = True
        try:
            self._items = await self._store.popular(days=self._days)
            self._fetched_at = now
        except StoreUnavailable:
            # Redis is down: do not ask again before the TTL (reads must stay fast).
            self._fetched_at = now
        finally:
            self._refreshing = False
        return self._items
