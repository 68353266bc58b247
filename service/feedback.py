"""The write side of the API: validate a batch against the catalog, write it
atomically and count what was accepted. (A refused batch is counted at the HTTP edge, with
the ones refused by the schema: ``service.errors``.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.catalog_mirror import CatalogMirror
from service.catalog_store import CatalogStore
from service.feedback_store import FeedbackStore, PartlyWritten, WriteResult
from service.intake import to_events
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder
from service.recommender import snapshot
from service.schemas import FeedbackBatch, FeedbackResult
from veto.errors import StoreUnavailable


class FeedbackDesk:
    """Accepts feedback batches: all of a batch or nothing."""

    def __init__(
        self,
        holder: ModelHolder,
        store: FeedbackStore,
        metrics: ServiceMetrics,
        *,
        catalog: CatalogStore | None = None,
        mirror: CatalogMirror | None = None,
        max_batch: int,
        max_skew_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._holder = holder
        self._store = store
        self._catalog = catalog or CatalogStore(store.client)
        self._mirror = mirror
        self._metrics = metrics
        self._max_batch = max_batch
        self._max_skew = max_skew_seconds
        self._clock = clock

    async def submit(self, batch: FeedbackBatch) -> tuple[FeedbackResult, WriteResult]:
        """Validate and write a batch; InvalidInput (nothing written) or StoreUnavailable."""
        model = snapshot(self._holder)
        if len(batch.events) > self._max_batch:
            states: dict[str, str | None] = {}  # refused by size below, before any read
        else:
            states = await self._catalog_states(batch)
        events = to_events(
            batch,
            model,
            catalog=states,
            now=self._clock(),
            max_batch=self._max_batch,
            max_skew_seconds=self._max_skew,
        )
        try:
            written = await self._store.write_batch(events)
        except PartlyWritten as exc:
            # Stored events are counted when stored: the client's retry finds them duplicates.
            self._count(exc.written)
            raise
        self._count(written)
        return FeedbackResult(accepted=written.accepted, duplicates=written.duplicates), written

    async def _catalog_states(self, batch: FeedbackBatch) -> dict[str, str | None]:
        """The batch's items' catalog states. When the catalog's Redis (its cluster master)
        is down, this replica's copy of what is withheld answers instead, as long as every
        item is one the served model has: no catalog write can happen meanwhile, and an item
        only the catalog knows would be refused as unknown, so that batch gets the 503."""
        item_ids = [ev.item_id for ev in batch.events]
        try:
            # One round trip more per batch: a deletion by another replica a moment ago
            # must already refuse the item here.
            return await self._catalog.states(item_ids)
        except StoreUnavailable:
            if self._mirror is None or self._mirror.generation is None:
                raise
            rows = snapshot(self._holder).version.item_ids.rows(item_ids)
            if bool((rows < 0).any()):
                raise
            return {item: self._mirror.withheld.get(item) for item in item_ids}

    def _count(self, written: WriteResult) -> None:
        for kind, n in written.accepted_by_type.items():
            self._metrics.feedback_events.labels(type=kind.label).inc(n)
        if written.duplicates:
            self._metrics.feedback_duplicates.inc(written.duplicates)
