"""The responsiveness probe's queue: only sampled dislikes (none at rate 0), bounded, never
blocking. What it measures is pinned through /metrics in test_metrics."""

from __future__ import annotations

import random

import pytest

from service.feedback_store import FeedbackStore
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder
from service.responsiveness import ResponsivenessProbe
from veto.events import EventType, FeedbackEvent

pytestmark = pytest.mark.anyio


def _ev(n: int, kind: EventType) -> FeedbackEvent:
    return FeedbackEvent(f"e{n}", "u", f"i{n}", kind, 1.0, 1.0)


def _probe(store: FeedbackStore, *, rate: float, size: int) -> ResponsivenessProbe:
    return ResponsivenessProbe(
        store,
        ModelHolder(),
        ServiceMetrics(),
        sample_rate=rate,
        k=10,
        queue_size=size,
        rng=random.Random(0),
    )


async def test_a_full_queue_drops_samples_instead_of_blocking(store: FeedbackStore) -> None:
    probe = _probe(store, rate=1.0, size=2)  # not started: nothing drains the queue
    await probe.offer([_ev(n, EventType.DISLIKE) for n in range(5)])
    assert probe.pending == 2


async def test_only_dislikes_are_sampled_at_about_the_configured_rate(
    store: FeedbackStore,
) -> None:
    probe = _probe(store, rate=0.25, size=10_000)
    await probe.offer([_ev(n, EventType.LIKE) for n in range(100)])
    assert probe.pending == 0
    await probe.offer([_ev(n, EventType.DISLIKE) for n in range(2000)])
    assert 400 <= probe.pending <= 600


async def test_nothing_is_sampled_at_rate_zero(store: FeedbackStore) -> None:
    probe = _probe(store, rate=0.0, size=10)  # not started: a sample would stay queued
    await probe.offer([_ev(n, EventType.DISLIKE) for n in range(50)])
    assert probe.pending == 0
