"""The read side of the API: recommendations and similar items over one model snapshot.

Concurrent recommendation requests are served in batches (``service.batcher``): a batch takes
``holder.current`` once and uses that snapshot for every request in it, reads every user's
state in one Redis round trip, encodes the users and searches the index once, then applies
each request's own filters. The same round trip reads the catalog generation: a batch
after a catalog write first catches up (``service.catalog_mirror``), so a hidden or deleted
item is masked out from the next batch on, on every replica. Redis being down is not an
error here: the batch is computed without the users' histories (and with the last catalog
state seen) and each answer is marked degraded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np

from service.batcher import Batcher
from service.catalog_mirror import CatalogMirror
from service.catalog_store import CatalogStore
from service.errors import NotFound
from service.feedback_store import FeedbackStore, UserState
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel
from service.popular import PopularCache
from service.retrieval import (
    I64,
    Query,
    Ranked,
    category_rows,
    fallback,
    has_signal,
    history_rows,
    rank,
    rank_many,
)
from service.schemas import RecommendationsBody, ScoredItem, SimilarItems
from veto import items
from veto.errors import InvalidInput, NoModelVersion, StoreUnavailable
from veto.ranking import OFF, Strengths, penalty_sources

_EMPTY = UserState()
P = ParamSpec("P")
R = TypeVar("R")
Outcome = RecommendationsBody | Exception


def snapshot(holder: ModelHolder) -> ServingModel:
    """The served model; NoModelVersion (503) before the first version is loaded."""
    model = holder.current
    if model is None:
        raise NoModelVersion("no model version is loaded yet")
    return model


def _items(model: ServingModel, ranked: Ranked) -> list[ScoredItem]:
    ids = model.version.item_ids.names(ranked.rows)
    return [
        ScoredItem(item_id=item_id, score=float(score))
        for item_id, score in zip(ids, ranked.scores.tolist(), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Ask:
    """One recommendations request as the route validated it."""

    user_id: str
    k: int
    exclude: Sequence[str]  # valid ids, known to the model or not
    category: str | None
    include_seen: bool


@dataclass(frozen=True, slots=True)
class _Fallback:
    """A request with nothing to personalise on: the popular fallback's filters."""

    blocked: I64
    allowed: I64 | None


class Recommender:
    """Top-k for a user from their history in Redis and the served model."""

    def __init__(
        self,
        holder: ModelHolder,
        store: FeedbackStore,
        popular: PopularCache,
        metrics: ServiceMetrics,
        *,
        overfetch: int,
        offload_min_cost: int,
        strengths: Strengths = OFF,
        batch_max_size: int = 64,
        batch_max_wait: float = 0.0,
        catalog: CatalogMirror | None = None,
    ) -> None:
        self._holder = holder
        self._catalog = catalog or CatalogMirror(CatalogStore(store.client))
        self._store = store
        self._popular = popular
        self._metrics = metrics
        self._overfetch = overfetch
        self._offload_min_cost = offload_min_cost
        self._strengths = strengths
        self._batcher: Batcher[Ask, RecommendationsBody] = Batcher(
            self._serve,
            max_size=batch_max_size,
            max_wait=batch_max_wait,
            observe=metrics.observe_batch,
        )

    async def recommend(
        self,
        user_id: str,
        *,
        k: int,
        exclude: Sequence[str],
        category: str | None,
        include_seen: bool,
    ) -> RecommendationsBody:
        """The user's top-k without disliked, excluded and (unless include_seen) liked items."""
        return await self._batcher.submit(Ask(user_id, k, exclude, category, include_seen))

    async def _serve(self, asks: list[Ask]) -> list[Outcome]:
        """One batch: its answers in order, or the error of a request (an unknown category)."""
        version = snapshot(self._holder)
        generation: int | None = None
        read: list[UserState | None]
        try:
            generation, read = await self._store.read_batch([ask.user_id for ask in asks])
        except StoreUnavailable:
            read = [None] * len(asks)
        # A user whose state could not be read (Redis down, or their cluster master) gets a
        # degraded answer; on a cluster the others of the batch are served as usual.
        unread = [state is None for state in read]
        states = [_EMPTY if state is None else state for state in read]
        await self._catalog.refresh(generation)
        model = self._catalog.serving(version)
        outcomes: list[Outcome | None] = [None] * len(asks)
        personal: dict[int, Query] = {}
        popular: dict[int, _Fallback] = {}
        for i, (ask, state) in enumerate(zip(asks, states, strict=True)):
            try:
                allowed = category_rows(model, ask.category)
            except InvalidInput as exc:
                outcomes[i] = exc
                continue
            hidden = set(ask.exclude) | state.disliked
            if not ask.include_seen:
                hidden |= state.liked
            blocked = model.rows_of(hidden)  # (X,)
            rows, types = history_rows(model, state.history)
            if has_signal(model, ask.user_id, rows):
                window = self._strengths.penalty_window
                disliked = (  # the dislike penalty's sources (X,)
                    penalty_sources(rows, types, window)
                    if window
                    else model.rows_of(state.disliked)
                )
                personal[i] = Query(ask.user_id, rows, types, ask.k, blocked, allowed, disliked)
            else:
                popular[i] = _Fallback(blocked, allowed)
        ranked: dict[int, Ranked] = {}
        if personal:
            queries = list(personal.values())
            cost = sum(model.search_cost if q.allowed is None else q.allowed.size for q in queries)
            found = await self._compute(
                cost,
                rank_many,
                model,
                queries,
                overfetch=self._overfetch,
                strengths=self._strengths,
            )
            ranked.update(zip(personal, found, strict=True))
        if popular:
            # Only a batch with a user with nothing to personalise on pays for the popular list.
            recent = await self._popular.get()
            for i, f in popular.items():
                ranked[i] = fallback(
                    model, recent, k=asks[i].k, blocked=f.blocked, allowed=f.allowed
                )
        for i, result in ranked.items():
            outcomes[i] = self._answer(model, asks[i], states[i], result, degraded=unread[i])
        self._metrics.recommendations_served.inc(len(ranked))
        degraded = sum(1 for i in ranked if unread[i])
        if degraded:
            self._metrics.degraded_responses.inc(degraded)
        return [o for o in outcomes if o is not None]

    def _answer(
        self, model: ServingModel, ask: Ask, state: UserState, ranked: Ranked, *, degraded: bool
    ) -> RecommendationsBody:
        ids = model.version.item_ids
        items = [ids[row] for row in ranked.rows.tolist()]
        # Checked on every response against the disliked set read for this request.
        leaked = sum(1 for item in items if item in state.disliked)
        if leaked:
            self._metrics.disliked_item_served.inc(leaked)
        if model.servable is not None and ranked.rows.size:
            withheld = int(ranked.rows.size - np.count_nonzero(model.servable[ranked.rows]))
            if withheld:
                self._metrics.withheld_item_served.inc(withheld)
        return RecommendationsBody(
            user_id=ask.user_id,
            item_ids=items,
            scores=ranked.scores.tolist(),
            model_version=model.number,
            request_id=uuid.uuid4().hex,
            degraded=degraded,
        )

    async def _compute(self, cost: int, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn`` in a worker thread when it compares at least ``offload_min_cost`` vectors."""
        if cost >= self._offload_min_cost:
            return await asyncio.to_thread(fn, *args, **kwargs)
        # A small search costs less than the thread hop and its GIL hand-offs.
        return fn(*args, **kwargs)

    async def similar(self, item_id: str, *, k: int) -> SimilarItems:
        """The k items nearest to one item (itself excluded), none the catalog withholds;
        NotFound for an item the model has no vector for or the catalog deleted."""
        version = snapshot(self._holder)
        await self._catalog.refresh_now()
        model = self._catalog.serving(version)
        row = model.version.item_ids.get(item_id)
        if row is None or self._catalog.withheld.get(item_id) == items.DELETED:
            raise NotFound(f"unknown item {item_id[:40]!r} in model version {model.number}")
        vector = np.asarray(model.version.vectors[row], dtype=np.float32)  # (D,)
        blocked = np.asarray([row], dtype=np.int64)
        ranked = await asyncio.to_thread(
            rank, model, vector, k=k, blocked=blocked, allowed=None, overfetch=1
        )
        return SimilarItems(
            item_id=item_id, items=_items(model, ranked), model_version=model.number
        )
