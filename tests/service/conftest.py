"""Service test fixtures: a small real model version in a temp artifacts dir, published in
the real Redis, and the real app driven in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

from service.app import create_app
from service.feedback_store import FeedbackStore, connect
from tests.service.svc_helpers import Serve
from tests.version_factory import DIM, write_demo_version
from trainer.data.synthetic import SyntheticWorld, make_world
from veto import registry
from veto.settings import ServiceSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def world() -> SyntheticWorld:
    """500 items in 8 planted categories, dim 16."""
    return make_world(n_items=500, n_users=20, n_categories=8, dim=DIM, events_per_user=10, seed=3)


@pytest.fixture
def publish_version(
    artifacts_dir: Path, redis_client: redis.Redis, world: SyntheticWorld
) -> Callable[..., Path]:
    """Write version ``v`` (if not there yet) and make it current."""

    def publish(v: int, *, ingest_time: float | None = None, write: bool = True) -> Path:
        path = artifacts_dir / f"v{v:08d}"
        if write and not path.exists():
            write_demo_version(artifacts_dir, v, world=world, ingest_time=ingest_time)
        registry.publish(redis_client, v)
        return path

    return publish


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[FeedbackStore]:
    """A FeedbackStore on the test Redis (4 partitions, history 10), for store-level tests."""
    s = FeedbackStore(
        connect(redis_url, timeout=0.3), partitions=4, history_len=10, dedupe_ttl_seconds=60
    )
    yield s
    await s.close()


@pytest.fixture
def settings(redis_url: str, artifacts_dir: Path) -> ServiceSettings:
    return ServiceSettings(
        redis_url=redis_url,
        artifacts_dir=artifacts_dir,
        poll_interval_seconds=0.05,
        popular_cache_seconds=0,
        responsiveness_sample_rate=0.0,
        redis_timeout_seconds=0.3,
    )


@pytest.fixture
def serve(settings: ServiceSettings) -> Serve:
    """``async with serve(**overrides) as (app, client)``: the app with its lifespan running."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = create_app(ServiceSettings(**{**settings.model_dump(), **overrides}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://veto") as client:
                yield app, client

    return run
