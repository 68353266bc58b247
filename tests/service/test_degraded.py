"""Redis down: reads answer from the model without history (degraded), writes get 503 with
Retry-After, readiness fails; once Redis is back the same client recovers by itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service.svc_helpers import Serve, event, items_of
from veto.cli.redis_server import RedisServer

pytestmark = pytest.mark.anyio


async def test_reads_degrade_and_writes_fail_fast_while_redis_is_down_then_recover(
    serve: Serve, publish_version: Callable[..., Path], redis_server: RedisServer
) -> None:
    publish_version(1)
    async with serve() as (app, client):
        await client.post("/v1/feedback", json={"events": [event("ann", "i1", "dislike")]})
        healthy = (await client.get("/v1/users/ann/recommendations?k=5")).json()
        redis_server.stop(kill=True)
        try:
            down = await client.get("/v1/users/ann/recommendations?k=5")
            stranger = await client.get("/v1/users/new/recommendations?k=5&exclude=i0")
            similar = await client.get("/v1/items/i3/similar?k=3")
            write = await client.post("/v1/feedback", json={"events": [event("ann", "i2", "like")]})
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
            metrics = (await client.get("/metrics")).text
        finally:
            redis_server.start()
        back = await client.get("/v1/users/ann/recommendations?k=5")
        write_again = await client.post(
            "/v1/feedback", json={"events": [event("ann", "i2", "like")]}
        )
        ready_again = await client.get("/readyz")
        assert app.state.services.holder.current.number == 1
    assert healthy["degraded"] is False
    assert down.status_code == 200 and down.json()["degraded"] is True
    assert down.json()["model_version"] == 1 and len(down.json()["items"]) == 5
    assert stranger.status_code == 200 and stranger.json()["degraded"] is True
    assert items_of(stranger.json())[:4] == ["i1", "i2", "i3", "i4"]  # the model's popular list
    assert similar.status_code == 200 and len(similar.json()["items"]) == 3
    assert write.status_code == 503
    assert write.headers["Retry-After"] == "1"
    assert write.json()["error"]["code"] == "store_unavailable"
    assert ready.status_code == 503 and alive.status_code == 200
    assert "veto_degraded_responses_total 2.0" in metrics
    assert back.status_code == 200 and back.json()["degraded"] is False
    assert "i1" not in items_of(back.json())  # AOF kept the dislike across the restart
    assert write_again.status_code == 200 and write_again.json()["accepted"] == 1
    assert ready_again.status_code == 200


async def test_service_starts_without_redis_and_becomes_ready_when_it_appears(
    serve: Serve, publish_version: Callable[..., Path], redis_server: RedisServer
) -> None:
    publish_version(1)
    redis_server.stop()
    try:
        async with serve() as (app, client):
            not_ready = await client.get("/readyz")
            redis_server.start()
            await app.state.reloader.check()
            ready = await client.get("/readyz")
    finally:
        if redis_server.process is None:
            redis_server.start()
    assert not_ready.status_code == 503
    assert ready.status_code == 200 and ready.json()["model_version"] == 1
