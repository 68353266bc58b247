"""The recommender: the popular list is fetched only for a user it is served to, a history is
read straight from its stored form, and concurrent requests served in one batch get the answers
they would get alone (their own filters, one snapshot, degraded together when Redis is down)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import redis

from service.feedback_store import FeedbackStore, UserState, connect
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel, build_serving_model
from service.popular import PopularCache
from service.recommender import Recommender
from service.retrieval import history_rows
from service.schemas import Recommendations, RecommendationsBody
from tests.version_factory import DIM, HISTORY_LEN, small_world, write_demo_version
from trainer.data.synthetic import SyntheticWorld
from veto.artifacts import load_version
from veto.cli.redis_server import RedisServer
from veto.errors import InvalidInput
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys
from veto.ranking import Strengths

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
    ids = model.version.item_ids
    assert rows == ids.rows(["i3"] + [f"i{n}" for n in range(HISTORY_LEN - 1)]).tolist()
    assert types == [int(EventType.DISLIKE)] + [int(EventType.CLICK)] * (HISTORY_LEN - 1)


# Requests that differ in every filter; "c3" and "c2" are categories of the demo world, the
# last one is not (an error for that request only).
_ASKS: list[dict[str, object]] = [
    {"user_id": "ann", "k": 5, "exclude": [], "category": None, "include_seen": False},
    {"user_id": "ann", "k": 7, "exclude": ["i10", "ghost"], "category": None, "include_seen": True},
    {"user_id": "ann", "k": 4, "exclude": [], "category": "c3", "include_seen": False},
    # 60 excludes: the batch's search fetches far more than the others' own fetches.
    {
        "user_id": "bob",
        "k": 2,
        "exclude": [f"i{n}" for n in range(100, 160)],
        "category": None,
        "include_seen": False,
    },
    {"user_id": "bob", "k": 3, "exclude": ["i2"], "category": None, "include_seen": False},
    {"user_id": "known", "k": 6, "exclude": ["i0"], "category": None, "include_seen": False},
    {"user_id": "stranger", "k": 5, "exclude": ["i1"], "category": None, "include_seen": False},
    {"user_id": "stranger", "k": 3, "exclude": [], "category": "c2", "include_seen": False},
    {
        "user_id": "bob",
        "k": 3,
        "exclude": [],
        "category": "no-such-category",
        "include_seen": False,
    },
]


@dataclasses.dataclass(frozen=True)
class _Seeded:
    liked: set[str]
    disliked: set[str]


def _seed_histories(client: redis.Redis, partitions: int, world: SyntheticWorld) -> _Seeded:
    """ann likes three c1 items and dislikes a fourth, so the dislike penalty reorders her
    nearest items; bob likes c4 items (stored as the write script stores them). Returns ann's."""
    c1 = [i for i, c in zip(world.item_ids, world.categories, strict=True) if c == "c1"]
    c4 = [i for i, c in zip(world.item_ids, world.categories, strict=True) if c == "c4"]
    for user, likes, dislikes in (("ann", c1[:3], [c1[3]]), ("bob", c4[:4], [])):
        uk = UserKeys(user, partitions)
        for item in likes:
            client.lpush(uk.history, HistoryEntry(item, EventType.LIKE, 1.0).encode())
            client.sadd(uk.liked, item)
        for item in dislikes:
            client.lpush(uk.history, HistoryEntry(item, EventType.DISLIKE, 2.0).encode())
            client.sadd(uk.disliked, item)
    return _Seeded(liked=set(c1[:3]), disliked={c1[3]})


def _recommender(
    model: ServingModel,
    store: FeedbackStore,
    metrics: ServiceMetrics,
    *,
    holder: ModelHolder | None = None,
    **batching: float,
) -> Recommender:
    holder = holder or ModelHolder()
    holder.swap(model)
    return Recommender(
        holder,
        store,
        PopularCache(store, ttl_seconds=0, days=1),
        metrics,
        overfetch=5,
        offload_min_cost=0,  # the batch runs in a worker thread, as large ones do
        # A strong penalty: it moves ann's candidates, so an answer computed from more
        # candidates than a lone search fetches would differ.
        strengths=Strengths(prior_weight=0.05, dislike_penalty=1.0),
        **batching,  # type: ignore[arg-type]
    )


async def _one_by_one(
    recommender: Recommender, asks: Sequence[dict[str, object]]
) -> list[RecommendationsBody | Exception]:
    out: list[RecommendationsBody | Exception] = []
    for ask in asks:
        try:
            out.append(await recommender.recommend(**ask))  # type: ignore[arg-type]
        except Exception as exc:
            out.append(exc)
    return out


async def _all_at_once(
    recommender: Recommender, asks: Sequence[dict[str, object]]
) -> list[RecommendationsBody | Exception]:
    calls = (recommender.recommend(**ask) for ask in asks)  # type: ignore[arg-type]
    return list(await asyncio.gather(*calls, return_exceptions=True))


def _same_answers(
    batched: Sequence[RecommendationsBody | BaseException],
    alone: Sequence[RecommendationsBody | BaseException],
) -> Iterator[RecommendationsBody]:
    """Assert each batched answer is the one served alone; yield the answers."""
    assert len(batched) == len(alone)
    for got, expected in zip(batched, alone, strict=True):
        if isinstance(expected, BaseException):
            assert type(got) is type(expected)
            continue
        assert isinstance(got, RecommendationsBody)
        assert got.item_ids == expected.item_ids
        assert got.scores == pytest.approx(expected.scores, abs=1e-5)
        assert (got.user_id, got.model_version, got.degraded) == (
            expected.user_id,
            expected.model_version,
            expected.degraded,
        )
        yield got


def _batches(metrics: ServiceMetrics) -> tuple[float, float]:
    """(batches served, requests in them) from the batch size histogram."""
    registry = metrics.registry
    count = registry.get_sample_value("veto_recommendation_batch_size_count") or 0.0
    total = registry.get_sample_value("veto_recommendation_batch_size_sum") or 0.0
    return count, total


async def test_concurrent_requests_in_one_batch_get_the_answers_they_get_alone(
    model: ServingModel, store: FeedbackStore, redis_client: redis.Redis, world: SyntheticWorld
) -> None:
    ann = _seed_histories(redis_client, store.partitions, world)
    alone = await _one_by_one(_recommender(model, store, ServiceMetrics(), batch_max_size=1), _ASKS)
    metrics = ServiceMetrics()
    batched = await _all_at_once(_recommender(model, store, metrics), _ASKS)
    answers = list(_same_answers(batched, alone))
    assert _batches(metrics) == (1, len(_ASKS))  # all of them in one batch
    assert isinstance(batched[-1], InvalidInput)  # the unknown category, and only it
    assert len(answers) == len(_ASKS) - 1
    by_ask = dict(zip(range(len(answers)), answers, strict=True))
    assert not ann.disliked & (set(by_ask[0].item_ids) | set(by_ask[1].item_ids))
    assert not ann.liked & set(by_ask[0].item_ids)  # include_seen=False
    assert "i10" not in by_ask[1].item_ids
    c3 = {model.version.item_ids[row] for row in model.category_rows["c3"].tolist()}
    assert set(by_ask[2].item_ids) <= c3
    assert [len(a.item_ids) for a in answers] == [5, 7, 4, 2, 3, 6, 5, 3]
    assert by_ask[6].item_ids == ["i0", "i2", "i3", "i4", "i5"]  # the popular fallback
    for answer in answers:  # the documented shape
        Recommendations.model_validate_json(answer.to_json())
    served = metrics.registry.get_sample_value("veto_recommendations_served_total")
    assert served == len(answers)


async def test_batches_respect_max_size_and_a_full_one_does_not_wait(
    model: ServingModel, store: FeedbackStore, redis_client: redis.Redis, world: SyntheticWorld
) -> None:
    _seed_histories(redis_client, store.partitions, world)
    asks = _ASKS[:8] * 2  # 16 requests
    metrics = ServiceMetrics()
    # An hour of allowed wait: a batch goes as soon as it is full, else the test times out.
    recommender = _recommender(model, store, metrics, batch_max_size=3, batch_max_wait=3600)
    batched = await _all_at_once(recommender, asks[:12])
    alone = await _one_by_one(_recommender(model, store, ServiceMetrics()), asks[:12])
    assert len(list(_same_answers(batched, alone))) == 12
    assert _batches(metrics) == (4, 12)  # never more than 3 together
    waits = metrics.registry.get_sample_value("veto_recommendation_queue_wait_seconds_count")
    assert waits == 12


async def test_a_lone_request_is_served_in_a_batch_of_its_own(
    model: ServingModel, store: FeedbackStore
) -> None:
    metrics = ServiceMetrics()
    recommender = _recommender(model, store, metrics)
    await recommender.recommend("known", k=3, exclude=[], category=None, include_seen=False)
    await recommender.recommend("known", k=3, exclude=[], category=None, include_seen=False)
    assert _batches(metrics) == (2, 2)


class _SwapDuringRead(FeedbackStore):
    """The real store, which makes ``next_model`` current while a batch reads from Redis."""

    holder: ModelHolder
    next_model: ServingModel | None = None

    async def read_batch(self, user_ids: Sequence[str]) -> tuple[int, list[UserState]]:
        found = await super().read_batch(user_ids)
        if self.next_model is not None:
            self.holder.swap(self.next_model)
            self.next_model = None
        return found


async def test_a_batch_is_answered_from_the_snapshot_it_started_with(
    model: ServingModel,
    store: FeedbackStore,
    redis_client: redis.Redis,
    redis_url: str,
    artifacts_dir: Path,
    world: SyntheticWorld,
) -> None:
    _seed_histories(redis_client, store.partitions, world)
    other = small_world(n_items=120, seed=7)  # another catalog: a mix of the two would show
    v2 = build_serving_model(load_version(write_demo_version(artifacts_dir, 2, world=other)))
    alone_v1 = await _one_by_one(_recommender(model, store, ServiceMetrics()), _ASKS)
    alone_v2 = await _one_by_one(_recommender(v2, store, ServiceMetrics()), _ASKS)
    swapping = _SwapDuringRead(
        connect(redis_url, timeout=0.3), partitions=4, history_len=10, dedupe_ttl_seconds=60
    )
    try:
        swapping.holder = ModelHolder()  # the holder the reloader would swap
        recommender = _recommender(model, swapping, ServiceMetrics(), holder=swapping.holder)
        swapping.next_model = v2
        during = await _all_at_once(recommender, _ASKS)
        after = await _all_at_once(recommender, _ASKS)
    finally:
        await swapping.close()
    assert {a.model_version for a in _same_answers(during, alone_v1)} == {1}
    assert {a.model_version for a in _same_answers(after, alone_v2)} == {2}


async def test_a_batch_degrades_together_while_redis_is_down(
    model: ServingModel,
    store: FeedbackStore,
    redis_client: redis.Redis,
    redis_server: RedisServer,
    world: SyntheticWorld,
) -> None:
    _seed_histories(redis_client, store.partitions, world)
    metrics = ServiceMetrics()
    recommender = _recommender(model, store, metrics)
    redis_server.stop(kill=True)
    try:
        alone = await _one_by_one(_recommender(model, store, ServiceMetrics()), _ASKS)
        batched = await _all_at_once(recommender, _ASKS)
    finally:
        redis_server.start()
    answers = list(_same_answers(batched, alone))
    assert answers and all(a.degraded for a in answers)
    assert metrics.registry.get_sample_value("veto_degraded_responses_total") == len(answers)
    healthy = await recommender.recommend(**_ASKS[0])  # type: ignore[arg-type]
    assert healthy.degraded is False
