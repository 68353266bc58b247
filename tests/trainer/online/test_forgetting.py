"""Erasure and withdrawal reach the trainer: a round does not train on an erased user's
pending events (also when the erasure lands after the round read them), a round runs for an
erasure alone and publishes a version whose replay sample holds nothing of the user, and a
withdrawn like is trained on neither as a new label nor from the replay sample."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from service.feedback_store import FeedbackStore, connect
from service.user_store import UserStore
from tests.trainer.online.feedback import PARTITIONS, send
from trainer.learn.checkpoint import Checkpoint
from trainer.learn.examples import owner_of
from trainer.online import bootstrap
from trainer.online.loop import Trainer
from trainer.online.metrics import TrainerMetrics
from veto import keys, registry
from veto.artifacts import CHECKPOINT, version_dir
from veto.events import EventType, FeedbackEvent
from veto.settings import TrainerSettings


@pytest.fixture
def bootstrapped(trainer_env: Path) -> Path:
    code = bootstrap.main(["--dataset", "synthetic", "--items", "200", "--epochs", "2", "--quiet"])
    assert code == 0
    return trainer_env


def _trainer() -> tuple[Trainer, TrainerMetrics]:
    settings = TrainerSettings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    metrics = TrainerMetrics(CollectorRegistry())
    return Trainer(settings, client, metrics=metrics), metrics


def _erase(url: str, user: str) -> None:
    async def run() -> None:
        store = UserStore(connect(url, timeout=1.0), partitions=PARTITIONS)
        await store.erase(user)
        await store.client.aclose()

    asyncio.run(run())


def _write(url: str, events: list[tuple[str, str, EventType, float]]) -> None:
    """Through the service's write script: decisions, history and stream entry together."""
    now = time.time()
    batch = [
        FeedbackEvent(f"w{n}-{now}", user, item, kind, ts, now)
        for n, (user, item, kind, ts) in enumerate(events)
    ]

    async def run() -> None:
        store = FeedbackStore(
            connect(url, timeout=1.0), partitions=PARTITIONS, history_len=8, dedupe_ttl_seconds=60
        )
        await store.write_batch(batch)
        await store.close()

    asyncio.run(run())


def _replay(root: Path, version: int) -> tuple[np.ndarray, np.ndarray]:
    """Owners and labels of a version's replay sample."""
    replay = Checkpoint.load(version_dir(root, version) / CHECKPOINT).replay
    owners, labels = replay["owners"], replay["labels"]
    assert not isinstance(owners, int) and not isinstance(labels, int)
    return owners.numpy(), labels.numpy()


def test_an_erased_users_pending_events_are_not_trained_on(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    for n in range(3):
        send(redis_client, "ann", f"i{n}", EventType.LIKE)
    send(redis_client, "bob", "i9", EventType.LIKE)
    _erase(redis_url, "ann")
    trainer, _ = _trainer()
    report = trainer.run_once(max_events=100, first_wait=0.1)
    assert report is not None and report.events == 1 and report.version == 2
    owners, _ = _replay(bootstrapped, 2)
    assert owner_of("ann") not in owners and owner_of("bob") in owners
    assert redis_client.zcard(keys.erased(keys.partition_of("ann", PARTITIONS))) == 0


def test_an_erasure_racing_the_round_drops_the_events_it_already_read(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    for n in range(3):
        send(redis_client, "ann", f"i{n}", EventType.LIKE)
    send(redis_client, "bob", "i9", EventType.LIKE)
    trainer, metrics = _trainer()
    trainer.reader.ensure_groups()
    state = trainer.current_state()
    entries = trainer.collect(state, max_events=100, first_wait=0.1, interval_end=0.0)
    assert len(entries) == 4
    _erase(redis_url, "ann")  # after the round read them, before it trains
    report = trainer.train_round(state, entries)
    assert report.events == 1
    value = metrics.registry.get_sample_value
    assert value("veto_trainer_skipped_events_total", {"reason": "erased"}) == 3
    owners, _ = _replay(bootstrapped, report.version)
    assert owner_of("ann") not in owners


def test_an_erasure_alone_publishes_a_version_without_the_user(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    before, _ = _replay(bootstrapped, 1)
    user = "u3"  # a user of the bootstrap data set: in version 1's replay sample
    assert owner_of(user) in before
    _erase(redis_url, user)
    trainer, _ = _trainer()
    report = trainer.run_once(max_events=100, first_wait=0.0)
    assert report is not None and report.events == 0 and registry.current(redis_client) == 2
    after, _ = _replay(bootstrapped, 2)
    assert owner_of(user) not in after and len(after) > 0
    assert trainer.run_once(max_events=100, first_wait=0.0) is None  # purged: nothing to do


def test_a_withdrawn_like_is_not_trained_on_in_its_round_nor_from_the_replay(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    trainer, metrics = _trainer()
    _write(redis_url, [("ann", "i5", EventType.LIKE, 100.0), ("ann", "i6", EventType.LIKE, 100.0)])
    assert trainer.run_once(max_events=100, first_wait=0.1) is not None
    owners, labels = _replay(bootstrapped, 2)
    row5 = trainer.current_state().learner.item_index["i5"]
    assert np.any((owners == owner_of("ann")) & (labels == row5))  # trained on, replayed
    # Withdrawn in a later round: out of the replay sample, label and context alike.
    _write(redis_url, [("ann", "i5", EventType.WITHDRAW, 101.0)])
    assert trainer.run_once(max_events=100, first_wait=0.1) is not None
    owners, labels = _replay(bootstrapped, 3)
    assert not np.any((owners == owner_of("ann")) & (labels == row5))
    # Withdrawn in the same batch, out of order: never a label.
    _write(
        redis_url,
        [("bob", "i7", EventType.WITHDRAW, 200.0), ("bob", "i7", EventType.DISLIKE, 150.0)],
    )
    report = trainer.run_once(max_events=100, first_wait=0.1)
    assert report is not None
    value = metrics.registry.get_sample_value
    assert value("veto_trainer_skipped_events_total", {"reason": "withdrawn"}) == 1
    owners, labels = _replay(bootstrapped, 4)
    row7 = trainer.current_state().learner.item_index["i7"]
    assert not np.any((owners == owner_of("bob")) & (labels == row7))
