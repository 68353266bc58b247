"""Cold start against a real Redis, real trainer rounds, real FAISS and the real app: an item
PUT into the catalog is in the next version with its category's mean vector and is found by
``similar``; an item without a category gets the neutral vector; a deleted one gets no row; a
category change alone publishes a version; feedback on the new item then trains its row, and
a restarted trainer continues from the grown table. GET /v1/items/{id} answers "learned":
false for a new item until a round trains on feedback for it (as a label or in a history),
and a version written without the cold record has every row learned."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from service.app import create_app
from tests.trainer.online.feedback import send
from trainer.online import bootstrap
from trainer.online.cold_start import neutral_vector
from trainer.online.loop import Trainer
from trainer.online.metrics import TrainerMetrics
from veto import items, registry
from veto.artifacts import (
    COLD_ITEMS,
    MANIFEST,
    ModelVersion,
    load_version,
    read_manifest,
    version_dir,
)
from veto.events import EventType
from veto.settings import ServiceSettings, TrainerSettings

pytestmark = pytest.mark.anyio
KEY = {"X-API-Key": "k"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bootstrapped(trainer_env: Path) -> Path:
    """Version 1: 200 synthetic items i0..i199 in 20 categories (item i is in c{i % 20})."""
    code = bootstrap.main(["--dataset", "synthetic", "--items", "200", "--epochs", "2", "--quiet"])
    assert code == 0
    return trainer_env


def _trainer() -> Trainer:
    settings = TrainerSettings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return Trainer(settings, client, metrics=TrainerMetrics(CollectorRegistry()))


@asynccontextmanager
async def _service(redis_url: str, artifacts: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        redis_url=redis_url,
        artifacts_dir=artifacts,
        stream_partitions=4,
        history_len=8,
        poll_interval_seconds=0.05,
        api_key="k",
        responsiveness_sample_rate=0.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://veto") as client:
            yield client


async def _serving(client: httpx.AsyncClient, version: int) -> None:
    for _ in range(200):
        if (await client.get("/readyz")).json().get("model_version") == version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the service did not swap to version {version}")


async def _similar(client: httpx.AsyncClient, item: str, k: int = 10) -> list[str]:
    resp = await client.get(f"/v1/items/{item}/similar", params={"k": k})
    assert resp.status_code == 200, resp.text
    return [x["item_id"] for x in resp.json()["items"]]


def _means(version: ModelVersion) -> tuple[list[str], np.ndarray]:
    """Category names and their unit mean vectors (C, D) in ``version``."""
    names, rows = zip(*version.categories.rows_by_name().items(), strict=True)
    vectors = np.asarray(version.vectors)
    means = np.stack([vectors[r].mean(axis=0) for r in rows])
    return list(names), means / np.linalg.norm(means, axis=1, keepdims=True)


def _vector(version: ModelVersion, item: str) -> np.ndarray:
    row = version.item_ids.get(item)
    assert row is not None, f"{item} is not in version {version.version}"
    return np.asarray(version.vectors[row])


async def test_a_put_item_is_in_the_next_version_near_its_category_and_in_similar(
    bootstrapped: Path, redis_url: str
) -> None:
    v1 = load_version(version_dir(bootstrapped, 1))
    trainer = _trainer()
    async with _service(redis_url, bootstrapped) as client:
        for item, body in (
            ("new-c3", {"category": "c3"}),
            ("new-none", {}),
            ("new-gone", {"category": "c3"}),
            ("i5", {"category": "c7"}),  # was c5
        ):
            assert (
                await client.put(f"/v1/items/{item}", json=body, headers=KEY)
            ).status_code == 200
        assert (await client.delete("/v1/items/new-gone", headers=KEY)).status_code == 204
        assert (await client.get("/v1/items/new-c3/similar")).status_code == 404  # no row yet

        report = trainer.run_once(max_events=100, first_wait=0.0)  # no feedback at all
        assert report is not None and report.version == 2
        assert report.events == 0 and report.items_added == 2
        v2 = load_version(version_dir(bootstrapped, 2))
        assert len(v2.item_ids) == 202 and "new-gone" not in v2.item_ids
        assert v2.item_ids.tolist()[:200] == v1.item_ids.tolist()  # rows never move
        assert v2.categories[v2.item_ids.get("new-c3")] == "c3"  # type: ignore[index]
        assert v2.categories[v2.item_ids.get("new-none")] is None  # type: ignore[index]
        assert v2.categories[v2.item_ids.get("i5")] == "c7"  # type: ignore[index]

        # new-c3 points at c3's mean, far closer to it than to any other category's.
        names, means = _means(v2)
        cosines = means @ _vector(v2, "new-c3")  # (C,)
        assert names[int(np.argmax(cosines))] == "c3" and cosines.max() > 0.99
        assert np.sort(cosines)[-2] < cosines.max() - 0.2
        neutral = neutral_vector(np.asarray(v1.vectors))
        assert float(neutral @ _vector(v2, "new-none")) > 0.999
        assert float(neutral @ _vector(v2, "new-c3")) < 0.9

        await _serving(client, 2)
        c3 = [i for i, c in zip(v1.item_ids, v1.categories.tolist(), strict=True) if c == "c3"]
        central = max(c3, key=lambda i: float(_vector(v2, i) @ _vector(v2, "new-c3")))
        assert "new-c3" in await _similar(client, central)
        found = [i for i in c3 if "new-c3" in await _similar(client, i)]
        assert len(found) >= len(c3) // 2, f"in similar for {len(found)} of {len(c3)} c3 items"
        neighbours = await _similar(client, "new-c3")
        in_c3 = [i for i in neighbours if i in c3]
        assert len(in_c3) >= 8, neighbours

    assert trainer.run_once(max_events=100, first_wait=0.0) is None  # nothing new: no round


async def test_a_category_change_alone_publishes_a_version_with_it(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    trainer = _trainer()
    assert trainer.run_once(max_events=100, first_wait=0.0) is None  # seeded catalog = v1
    script = redis_client.register_script(items.WRITE_ITEMS)
    script_keys, args = items.script_input([items.put("i6", {"category": "c9"})], now=1.0)
    script(keys=script_keys, args=args)
    report = trainer.run_once(max_events=100, first_wait=0.0)
    assert report is not None and report.items_added == 0
    v2 = load_version(version_dir(bootstrapped, report.version))
    assert v2.categories[v2.item_ids.get("i6")] == "c9"  # type: ignore[index]


async def test_feedback_on_a_cold_item_trains_its_row_and_a_restart_continues(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    script = redis_client.register_script(items.WRITE_ITEMS)
    script_keys, args = items.script_input([items.put("new-c3", {"category": "c3"})], now=1.0)
    script(keys=script_keys, args=args)
    trainer = _trainer()
    assert trainer.run_once(max_events=100, first_wait=0.0) is not None  # version 2: cold
    learner = trainer.current_state().learner
    assert learner.model.item_emb.num_embeddings == 201
    assert learner.freq.counts.shape == (201,)
    weight = learner.model.item_emb.weight
    assert learner.sparse.param_groups[0]["params"][0] is weight
    cold = _vector(load_version(version_dir(bootstrapped, 2)), "new-c3")

    for n in range(6):  # users who like c3 items, then the new one
        send(redis_client, f"fan{n}", f"i{3 + 20 * n}", EventType.LIKE)
        send(redis_client, f"fan{n}", "new-c3", EventType.LIKE)
    report = trainer.run_once(max_events=100, first_wait=0.1)
    assert report is not None and report.version == 3 and report.events == 12
    row = learner.item_index["new-c3"]
    assert float(learner.sparse.state[weight]["sum"][row]) > 0  # its optimiser row moved
    trained = _vector(load_version(version_dir(bootstrapped, 3)), "new-c3")
    assert float(cold @ trained) < 0.9999, "the new item's vector did not change"

    restarted = _trainer()  # warm-starts from version 3's checkpoint: 201 rows throughout
    send(redis_client, "fan0", "new-c3", EventType.DISLIKE)
    report = restarted.run_once(max_events=100, first_wait=0.1)
    assert report is not None and report.version == 4 and report.events == 1
    assert restarted.current_state().learner.model.item_emb.num_embeddings == 201


async def _learned(client: httpx.AsyncClient, item: str) -> tuple[bool, int]:
    resp = await client.get(f"/v1/items/{item}")
    assert resp.status_code == 200, resp.text
    return resp.json()["learned"], resp.json()["model_version"]


def _rows(version: ModelVersion, *ids: str) -> set[int]:
    return {version.item_ids.get(i) for i in ids}  # type: ignore[misc]


async def test_a_cold_item_is_not_learned_until_a_round_trains_on_feedback_for_it(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    trainer = _trainer()
    async with _service(redis_url, bootstrapped) as client:
        for item in ("new-c3", "new-quiet"):
            put = await client.put(f"/v1/items/{item}", json={"category": "c3"}, headers=KEY)
            assert put.status_code == 200 and put.json()["learned"] is False  # no row yet
        report = trainer.run_once(max_events=100, first_wait=0.0)
        assert report is not None and report.version == 2 and report.items_added == 2
        v2 = load_version(version_dir(bootstrapped, 2))
        assert v2.cold_rows == _rows(v2, "new-c3", "new-quiet") == {200, 201}
        await _serving(client, 2)
        assert await _learned(client, "new-c3") == (False, 2)  # a row, but its cold vector
        assert await _learned(client, "new-quiet") == (False, 2)
        assert await _learned(client, "i3") == (True, 2)

        for n in range(6):  # feedback on new-c3 (label), none on new-quiet
            send(redis_client, f"fan{n}", f"i{3 + 20 * n}", EventType.LIKE)
            send(redis_client, f"fan{n}", "new-c3", EventType.LIKE)
        report = trainer.run_once(max_events=100, first_wait=0.1)
        assert report is not None and report.version == 3 and report.events == 12
        state = trainer.current_state()
        quiet = state.learner.item_index["new-quiet"]
        weight = state.learner.model.item_emb.weight
        # new-quiet got gradient steps as a sampled negative: that is not feedback on it.
        assert float(state.learner.sparse.state[weight]["sum"][quiet]) > 0
        v3 = load_version(version_dir(bootstrapped, 3))
        assert v3.cold_rows == {quiet}
        await _serving(client, 3)
        assert await _learned(client, "new-c3") == (True, 3)
        assert await _learned(client, "new-quiet") == (False, 3)

        restarted = _trainer()  # reads the cold rows back from version 3
        send(redis_client, "fan9", "i43", EventType.LIKE)  # a round without new-quiet
        report = restarted.run_once(max_events=100, first_wait=0.1)
        assert report is not None and report.version == 4
        assert restarted.current_state().cold == {quiet}
        await _serving(client, 4)
        assert await _learned(client, "new-quiet") == (False, 4)

        # A skip is never a label, but it is in the history of the user's next example.
        send(redis_client, "fan9", "new-quiet", EventType.SKIP)
        send(redis_client, "fan9", "i63", EventType.LIKE)
        report = restarted.run_once(max_events=100, first_wait=0.1)
        assert report is not None and report.version == 5 and report.examples >= 1
        assert load_version(version_dir(bootstrapped, 5)).cold_rows == frozenset()
        await _serving(client, 5)
        assert await _learned(client, "new-quiet") == (True, 5)


async def test_a_version_without_the_cold_record_has_every_row_learned(
    bootstrapped: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    trainer = _trainer()
    async with _service(redis_url, bootstrapped) as client:
        assert (
            await client.put("/v1/items/new-c3", json={"category": "c3"}, headers=KEY)
        ).status_code == 200
        assert trainer.run_once(max_events=100, first_wait=0.0) is not None  # version 2
        await _serving(client, 2)
        assert await _learned(client, "new-c3") == (False, 2)

        # Version 3: version 2 as a trainer from before the record would have written it.
        v3 = version_dir(bootstrapped, 3)
        shutil.copytree(version_dir(bootstrapped, 2), v3)
        (v3 / COLD_ITEMS).unlink()
        manifest = read_manifest(v3)
        files = {k: v for k, v in manifest.files.items() if k != COLD_ITEMS}
        (v3 / MANIFEST).write_text(
            dataclasses.replace(manifest, version=3, parent=2, files=files).to_json()
        )
        registry.publish(redis_client, 3)
        await _serving(client, 3)
        assert await _learned(client, "new-c3") == (True, 3)
        assert await _learned(client, "i3") == (True, 3)
        assert _trainer().current_state().cold == set()
