"""The recommender's reads: the popular list is fetched only for a user it is served to, and a
history is read straight from its stored form."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from service.feedback_store import FeedbackStore
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel, build_serving_model
from service.popular import PopularCache
from service.recommender import Recommender
from service.retrieval import history_rows
from tests.version_factory import DIM, HISTORY_LEN
from veto.artifacts import load_version
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys

pytestmark = pytest.mark.anyio


class _CountingPopular(PopularCache):
    """The real cache, counting how often a request asks it."""

    def __init__(self, store: FeedbackStore) -> None:
        super().__init__(store, ttl_seconds=0, days=1)
        self.calls = 0

    async def get(self) -> list[tuple[str, float]]:
        self.calls += 1
        return await super().get()


@pytest.fixture
def model(publish_version: Callable[..., Path]) -> ServingModel:
    """Version 1 with a learned embedding for the user "known"."""
    version = load_version(publish_version(1))
    embedding = np.full((1, DIM), 0.25, dtype=np.float32)  # (U, D)
    encoder = dataclasses.replace(version.encoder, user_emb=embedding, user_index={"known": 0})
    return build_serving_model(dataclasses.replace(version, encoder=encoder))


async def _recommend(recommender: Recommender, user_id: str) -> list[str]:
    found = await recommender.recommend(user_id, k=3, exclude=[], category=None, include_seen=False)
    return found.item_ids


async def test_the_popular_list_is_fetched_only_when_it_is_served(
    model: ServingModel, store: FeedbackStore, redis_client: redis.Redis
) -> None:
    holder = ModelHolder()
    holder.swap(model)
    popular = _CountingPopular(store)
    recommender = Recommender(
        holder, store, popular, ServiceMetrics(), overfetch=5, offload_min_cost=10**9
    )
    entry = HistoryEntry("i7", EventType.LIKE, 1.0).encode()
    redis_client.lpush(UserKeys("with-history", store.partitions).history, entry)

    known_without_history = await _recommend(recommender, "known")
    with_history = await _recommend(recommender, "with-history")
    assert popular.calls == 0  # both are personalised: the popular list would go unused
    stranger = await _recommend(recommender, "stranger")
    assert popular.calls == 1
    assert stranger == ["i0", "i1", "i2"]  # version_factory: the model's popular list
    assert len(known_without_history) == 3 and len(with_history) == 3


def test_a_stored_history_becomes_the_encoders_input_in_one_pass(model: ServingModel) -> None:
    stored = [
        HistoryEntry("i3", EventType.DISLIKE, 3.0).encode(),
        HistoryEntry("retired", EventType.LIKE, 2.5).encode(),  # unknown to the model: skipped
        *(HistoryEntry(f"i{n}", EventType.CLICK, 2.0).encode() for n in range(HISTORY_LEN)),
    ]
    rows, types = history_rows(model, stored)
    index = model.version.item_index
    assert rows == [index["i3"]] + [index[f"i{n}"] for n in range(HISTORY_LEN - 1)]
    assert types == [int(EventType.DISLIKE)] + [int(EventType.CLICK)] * (HISTORY_LEN - 1)
