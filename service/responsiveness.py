"""Online counterfactual responsiveness (design notes, "Responsiveness" 2): for a sampled
share of accepted dislikes, the user's top-K from the same history and the same model with
and without that dislike, and the relative change of the share of items in the disliked
item's category. Runs in a background task fed by a bounded queue: it costs the request
nothing, and a full queue drops the sample, never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from service.background import Background
from service.catalog_mirror import CatalogMirror
from service.feedback_store import FeedbackStore
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel
from service.retrieval import history_rows, top_rows
from veto.errors import StoreUnavailable
from veto.events import EventType, FeedbackEvent, HistoryEntry

log = logging.getLogger(__name__)


def similar_share_change(
    model: ServingModel,
    *,
    user_id: str,
    history: Sequence[str],
    disliked: HistoryEntry,
    k: int,
) -> float | None:
    """(share_with - share_without) / share_without over the unfiltered top-k, where share
    is the fraction of items in the disliked item's category. ``history`` is the user's as
    Redis keeps it (``HistoryEntry.encode()`` strings, newest first). None when the item has
    no category or nothing similar was recommended without the dislike."""
    row = model.version.item_ids.get(disliked.item_id)
    if row is None or model.category_codes[row] < 0:
        return None
    code = model.category_codes[row]
    entry = disliked.encode()
    without = list(history)
    if entry in without:
        without.remove(entry)
    encoder, vectors = model.version.encoder, model.version.vectors
    rows_wo, types_wo = history_rows(model, without)
    rows_w, types_w = history_rows(model, [entry, *without])
    top_wo = top_rows(model, encoder.encode(vectors, rows_wo, types_wo, user_id), k)  # (K,)
    top_w = top_rows(model, encoder.encode(vectors, rows_w, types_w, user_id), k)  # (K,)
    if top_wo.size == 0 or top_w.size == 0:
        return None
    share_wo = float(np.mean(model.category_codes[top_wo] == code))
    if share_wo == 0.0:
        return None
    share_w = float(np.mean(model.category_codes[top_w] == code))
    return (share_w - share_wo) / share_wo


@dataclass(frozen=True)
class _Sample:
    user_id: str
    entry: HistoryEntry


class ResponsivenessProbe:
    """Samples accepted dislikes and observes their similar-share change off the request path."""

    def __init__(
        self,
        store: FeedbackStore,
        holder: ModelHolder,
        metrics: ServiceMetrics,
        *,
        sample_rate: float,
        k: int,
        queue_size: int,
        catalog: CatalogMirror | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._holder = holder
        self._metrics = metrics
        self._rate = sample_rate
        self._k = k
        self._rng = rng or random.Random()
        self._catalog = catalog
        self._queue: asyncio.Queue[_Sample] = asyncio.Queue(maxsize=queue_size)
        self._background = Background("veto-responsiveness", self._run)

    async def offer(self, events: Iterable[FeedbackEvent]) -> None:
        """Queue a sample of the dislikes among ``events`` (accepted ones); never blocks.
        A coroutine so that a background task runs it on the event loop: asyncio.Queue is
        not thread-safe, and Starlette runs plain functions in a thread."""
        for ev in events:
            if ev.type != EventType.DISLIKE or self._rate <= 0 or self._rng.random() >= self._rate:
                continue
            entry = HistoryEntry(item_id=ev.item_id, type=ev.type, timestamp=ev.timestamp)
            try:
                self._queue.put_nowait(_Sample(ev.user_id, entry))
            except asyncio.QueueFull:
                log.debug("responsiveness queue full: sample dropped")

    async def _measure(self, sample: _Sample) -> None:
        model = self._holder.current
        if model is None:
            return
        if self._catalog is not None:
            # The catalog's categories (and its withheld items) as the requests see them.
            model = self._catalog.serving(model)
        try:
            state = await self._store.read_user(sample.user_id)
        except StoreUnavailable:
            return
        value = await asyncio.to_thread(
            similar_share_change,
            model,
            user_id=sample.user_id,
            history=state.history,
            disliked=sample.entry,
            k=self._k,
        )
        if value is not None:
            self._metrics.responsiveness.observe(value)

    async def _run(self) -> None:
        while True:
            sample = await self._queue.get()
            try:
                await self._measure(sample)
            except Exception:  # a bad sample must not stop the probe
                log.exception("responsiveness measurement failed")
            finally:
                self._queue.task_done()

    async def drained(self) -> None:
        """Wait until every queued sample has been measured (or dropped as unmeasurable)."""
        await self._queue.join()

    @property
    def pending(self) -> int:
        """Samples queued and not measured yet."""
        return self._queue.qsize()

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
