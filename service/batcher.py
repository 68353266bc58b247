"""Micro-batching of concurrent calls: requests in flight are served together, one batch at a
time, and an idle service adds no wait.

    submit(item) ──▶ queue ──▶ dispatcher task: take ≤ max_size items (waiting at most
                                max_wait for more), await process(batch), resolve each caller

The dispatcher starts when an item arrives at an empty queue and ends when the queue is empty:
the first request after a quiet spell is dispatched on the next turn of the event loop, and
while one batch is processed the next one forms by itself. ``process`` returns one outcome per
item, in order: a value, or an exception that only that caller sees; an exception raised by
``process`` itself reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# One outcome per item: its value or the exception its caller gets.
Process = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]
# (batch size, each item's seconds between submit and dispatch)
Observe = Callable[[int, list[float]], None]


@dataclass(frozen=True, slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float


class Batcher(Generic[T, R]):
    """Serves ``submit`` calls in batches of at most ``max_size`` through ``process``."""

    def __init__(
        self,
        process: Process[T, R],
        *,
        max_size: int,
        max_wait: float = 0.0,
        observe: Observe | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._process = process
        self._max_size = max_size
        self._max_wait = max_wait
        self._observe = observe
        self._clock = clock
        self._queue: deque[_Pending[T, R]] = deque()
        self._arrived = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s outcome once its batch is processed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future, self._clock()))
        self._arrived.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="veto-batcher")
        return await future

    async def _dispatch(self) -> None:
        try:
            while self._queue:
                await self._fill()
                batch = [
                    self._queue.popleft() for _ in range(min(self._max_size, len(self._queue)))
                ]
                await self._run(batch)
        except asyncio.CancelledError:
            while self._queue:
                self._queue.popleft().future.cancel()
            raise
        finally:
            self._dispatcher = None

    async def _fill(self) -> None:
        """Wait up to ``max_wait`` after the oldest item for the batch to fill."""
        if self._max_wait <= 0:
            return
        deadline = self._queue[0].queued_at + self._max_wait
        while len(self._queue) < self._max_size:
            left = deadline - self._clock()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def _run(self, batch: list[_Pending[T, R]]) -> None:
        started = self._clock()
        if self._observe is not None:
            self._observe(len(batch), [started - p.queued_at for p in batch])
        try:
            outcomes = await self._process([p.item for p in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except asyncio.CancelledError:
            for pending in batch:  # shutting down: no caller may wait forever
                pending.future.cancel()
            raise
        except Exception as exc:
            log.debug("batch of %d failed: %r", len(batch), exc)
            outcomes = [exc] * len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():  # the caller went away (cancelled)
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
