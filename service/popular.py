"""The popular-items fallback, cached in-process for a few seconds so unknown users do not
cost one Redis pipeline over every partition and day per request. The refresh runs in the
background: a request is served the list at hand, never made to wait for a newer one."""

from __future__ import annotations

import asyncio
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
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> list[tuple[str, float]]:
        """The cached list; once stale, one refresh starts in the background and this call
        and those during the refresh get the list at hand (the last good one while Redis is
        down). Only the very first caller waits, for want of any list: no herd either way."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
        if stale and self._refresh is None:
            first = self._fetched_at is None
            self._refresh = asyncio.create_task(self._fetch(now), name="veto-popular-refresh")
            if first:
                await asyncio.shield(self._refresh)
        return self._items

    async def _fetch(self, now: float) -> None:
        try:
            self._items = await self._store.popular(days=self._days)
        except StoreUnavailable:
            pass  # Redis is down: keep the last list and do not ask again before the TTL
        finally:
            self._fetched_at = now
            self._refresh = None
