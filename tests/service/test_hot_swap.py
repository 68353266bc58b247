"""Hot swap: the service follows the pointer, refuses a tampered version while the old one
keeps serving, rolls back to an older one, and drops no request while swapping."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service import reloader
from tests.conftest import BOTH
from tests.service.svc_helpers import Serve, event

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("redis_backend", BOTH, indirect=True),
]


async def _served_version(client: httpx.AsyncClient) -> int:
    resp = await client.get("/v1/users/watcher/recommendations?k=3")
    assert resp.status_code == 200
    version: int = resp.json()["model_version"]
    return version


async def _wait_for_version(client: httpx.AsyncClient, version: int, timeout: float = 5.0) -> None:
    """Wait for the reloader (pub/sub or polling, not called by the test) to swap."""
    deadline = time.monotonic() + timeout
    while await _served_version(client) != version:
        assert time.monotonic() < deadline, f"version {version} was not swapped in"
        await asyncio.sleep(0.02)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_publish_swap_refuse_tampered_and_roll_back(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        assert await _served_version(client) == 1
        publish_version(2, ingest_time=time.time() - 30)
        await _wait_for_version(client, 2)
        # v3: a serving file changed after the manifest was written.
        v3 = publish_version(3, write=True)
        with (v3 / "popular.json").open("a") as fh:
            fh.write(" ")
        publish_version(3, write=False)
        await asyncio.sleep(0.3)  # several poll intervals: it had every chance to swap
        still = await _served_version(client)
        metrics_after_refusal = (await client.get("/metrics")).text
        publish_version(1, write=False)
        await _wait_for_version(client, 1)
        metrics = (await client.get("/metrics")).text
    assert still == 2
    # Refused once, not retried every poll while the pointer stays on it.
    assert _metric(metrics_after_refusal, "veto_model_swap_failures_total") == 1.0
    assert _metric(metrics_after_refusal, "veto_model_version") == 2.0
    assert _metric(metrics, "veto_model_version") == 1.0
    assert _metric(metrics, "veto_model_swap_duration_seconds_count") == 3.0  # v1, v2, v1
    # Lag observed once: v2 carries a watermark; the first load and the rollback are no lag.
    assert _metric(metrics, "veto_feedback_to_model_lag_seconds_count") == 1.0
    assert 30 <= _metric(metrics, "veto_feedback_to_model_lag_seconds_sum") < 60
    assert 0 <= _metric(metrics, "veto_model_age_seconds") < 60


async def test_a_missing_version_directory_is_refused(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (app, client):
        publish_version(9, write=False)
        assert await app.state.reloader.check() is False
        assert await _served_version(client) == 1


async def test_swaps_under_concurrent_requests_fail_no_request(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    publish_version(2)
    publish_version(1, write=False)
    async with serve() as (_, client):
        await client.post("/v1/feedback", json={"events": [event("busy", "i5", "like")]})
        stop = asyncio.Event()
        statuses: list[int] = []
        versions: set[int] = set()

        async def hammer() -> None:
            while not stop.is_set():
                resp = await client.get("/v1/users/busy/recommendations?k=10")
                statuses.append(resp.status_code)
                versions.add(resp.json().get("model_version", -1))

        workers = [asyncio.create_task(hammer()) for _ in range(8)]
        for target in (2, 1, 2, 1, 2):
            publish_version(target, write=False)
            await _wait_for_version(client, target)
        stop.set()
        await asyncio.gather(*workers)
    assert statuses and set(statuses) == {200}
    assert versions == {1, 2}


async def test_every_version_is_loaded_on_one_loader_thread(
    serve: Serve, publish_version: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc keeps a freed version in the malloc arena of the thread that allocated it: loads
    # spread over many threads grew the soak's RSS by a version per thread.
    threads: list[threading.Thread] = []  # the objects: a new thread is never "the same"
    real = reloader.load_serving_model

    def recording(*args: object) -> object:
        threads.append(threading.current_thread())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reloader, "load_serving_model", recording)
    publish_version(1)
    async with serve() as (_, client):
        # Keep the default executor's threads busy while the swaps happen.
        busy = [asyncio.ensure_future(asyncio.to_thread(time.sleep, 0.05)) for _ in range(8)]
        for v in (2, 3, 4, 1):
            publish_version(v)
            await _wait_for_version(client, v)
        await asyncio.gather(*busy)
    assert len(threads) == 5
    assert len({id(t) for t in threads}) == 1
    assert threads[0].name.startswith("veto-model-loader")


async def test_a_swap_holds_at_most_two_versions(
    serve: Serve, publish_version: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Memory is sized for two versions (README capacity plan): the served one and the one
    # being loaded. Anything keeping a replaced version alive would grow RSS by a version.
    loaded: list[weakref.ref[object]] = []
    real = reloader.load_serving_model

    def recording(*args: object) -> object:
        model = real(*args)  # type: ignore[arg-type]
        loaded.append(weakref.ref(model.version))
        return model

    monkeypatch.setattr(reloader, "load_serving_model", recording)
    publish_version(1)
    async with serve() as (_, client):
        for v in (2, 3, 4):
            publish_version(v)
            await _wait_for_version(client, v)
            gc.collect()
            assert [ref() is not None for ref in loaded] == [False] * (len(loaded) - 1) + [True]
