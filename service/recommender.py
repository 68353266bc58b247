"""The read side of the API: recommendations and similar items over one model snapshot.

A request takes ``holder.current`` once and uses that snapshot throughout. Redis being down
is not an error here: the answer is computed without the user's history and marked degraded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import numpy as np

from service.errors import NotFound
from service.feedback_store import FeedbackStore, UserState
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel
from service.popular import PopularCache
from service.retrieval import (
    I64,
    Adjustment,
    Ranked,
    category_rows,
    fallback,
    has_signal,
    history_rows,
    rank,
    user_vector,
)
from service.schemas import Recommendations, ScoredItem, SimilarItems
from veto.errors import NoModelVersion, StoreUnavailable
from veto.ranking import OFF, Strengths, penalty_sources

_EMPTY = UserState()
P = ParamSpec("P")
R = TypeVar("R")


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
    ) -> None:
        self._holder = holder
        self._store = store
        self._popular = popular
        self._metrics = metrics
        self._overfetch = overfetch
        self._offload_min_cost = offload_min_cost
        self._strengths = strengths

    async def recommend(
        self,
        user_id: str,
        *,
        k: int,
        exclude: Sequence[str],
        category: str | None,
        include_seen: bool,
    ) -> Recommendations:
        """The user's top-k without disliked, excluded and (unless include_seen) liked items.
        ``exclude`` holds valid ids (checked by the route's schema), known or not."""
        model = snapshot(self._holder)
        allowed = category_rows(model, category)
        degraded = False
        try:
            state = await self._store.read_user(user_id)
        except StoreUnavailable:
            state, degraded = _EMPTY, True
        hidden = set(exclude) | state.disliked
        if not include_seen:
            hidden |= state.liked
        blocked = model.rows_of(hidden)  # (B,)
        rows, types = history_rows(model, state.history)
        cost = model.search_cost if allowed is None else int(allowed.size)
        if has_signal(model, user_id, rows):
            window = self._strengths.penalty_window
            sources = (
                penalty_sources(rows, types, window) if window else model.rows_of(state.disliked)
            )
            adjustment = Adjustment(sources, self._strengths)  # (X,)
            ranked = await self._compute(
                cost, self._personal, model, user_id, rows, types,
                k=k, blocked=blocked, allowed=allowed, adjustment=adjustment,
            )  # fmt: skip
        else:
            # Only a user with nothing to personalise on pays for the popular list.
            popular = await self._popular.get()
            ranked = await self._compute(
                cost, fallback, model, popular, k=k, blocked=blocked, allowed=allowed
            )
        self._metrics.recommendations_served.inc()
        if degraded:
            self._metrics.degraded_responses.inc()
        items = _items(model, ranked)
        # Checked on every response against the disliked set read for this request.
        leaked = sum(1 for item in items if item.item_id in state.disliked)
        if leaked:
            self._metrics.disliked_item_served.inc(leaked)
        return Recommendations(
            user_id=user_id,
            items=items,
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

    def _personal(
        self,
        model: ServingModel,
        user_id: str,
        rows: list[int],
        types: list[int],
        *,
        k: int,
        blocked: I64,
        allowed: I64 | None,
        adjustment: Adjustment,
    ) -> Ranked:
        vector = user_vector(model, user_id, rows, types)
        return rank(
            model,
            vector,
            k=k,
            blocked=blocked,
            allowed=allowed,
            overfetch=self._overfetch,
            adjustment=adjustment,
        )

    async def similar(self, item_id: str, *, k: int) -> SimilarItems:
        """The k items nearest to one item (itself excluded); NotFound for an unknown item."""
        model = snapshot(self._holder)
        row = model.version.item_ids.get(item_id)
        if row is None:
            raise NotFound(f"unknown item {item_id[:40]!r} in model version {model.number}")
        vector = np.asarray(model.version.vectors[row], dtype=np.float32)  # (D,)
        blocked = np.asarray([row], dtype=np.int64)
        ranked = await asyncio.to_thread(
            rank, model, vector, k=k, blocked=blocked, allowed=None, overfetch=1
        )
        return SimilarItems(
            item_id=item_id, items=_items(model, ranked), model_version=model.number
        )
