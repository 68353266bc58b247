"""service.catalog_mirror against a real Redis: the log replayed after a write, the whole
state reloaded when the log was trimmed past the mirror or Redis lost its data, and a batch
without a catalog change paying no catalog read but the generation in its pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from service.catalog_mirror import CatalogMirror
from service.catalog_store import CatalogStore
from service.feedback_store import FeedbackStore
from tests.service.svc_helpers import Serve
from tests.version_factory import small_world, write_demo_version
from veto import items, keys

pytestmark = pytest.mark.anyio


async def _synced(catalog: CatalogStore, mirror: CatalogMirror) -> None:
    await mirror.refresh(await catalog.generation())


async def test_writes_are_replayed_from_the_log(store: FeedbackStore) -> None:
    catalog = CatalogStore(store.client)
    mirror = CatalogMirror(catalog)
    await catalog.write([items.put("a", {"category": "c1"}), items.put("b", {"hidden": True})])
    await _synced(catalog, mirror)
    await catalog.write([items.put("b", {"hidden": False}), items.delete("c", known=True)])
    await catalog.write([items.put("a", {"category": None, "hidden": True})])
    await _synced(catalog, mirror)
    assert mirror.withheld == {"a": items.HIDDEN, "c": items.DELETED}
    assert mirror.categories == {}
    assert mirror.generation == 3


async def test_a_mirror_behind_a_trimmed_log_reloads_everything(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    catalog = CatalogStore(store.client)
    mirror = CatalogMirror(catalog)
    await catalog.write([items.put("a", {})])
    await _synced(catalog, mirror)
    await catalog.write([items.put("x", {"hidden": True, "category": "c2"})])
    await catalog.write([items.put("y", {"hidden": True})])
    redis_client.xtrim(keys.CATALOG_LOG, maxlen=1, approximate=False)  # x: gone, y: kept
    assert redis_client.xlen(keys.CATALOG_LOG) == 1
    await _synced(catalog, mirror)
    assert mirror.withheld == {"x": items.HIDDEN, "y": items.HIDDEN}
    assert mirror.categories == {"x": "c2"}


async def test_a_mirror_further_behind_than_its_replay_limit_reloads_everything(
    store: FeedbackStore,
) -> None:
    catalog = CatalogStore(store.client)
    mirror = CatalogMirror(catalog, replay_limit=2)
    await _synced(catalog, mirror)
    await catalog.write([items.put(f"h{n}", {"hidden": True}) for n in range(5)])
    await _synced(catalog, mirror)
    assert set(mirror.withheld) == {f"h{n}" for n in range(5)}


async def test_after_redis_lost_its_data_the_old_state_is_dropped(
    store: FeedbackStore, redis_client: redis.Redis
) -> None:
    catalog = CatalogStore(store.client)
    mirror = CatalogMirror(catalog)
    for n in range(3):
        await catalog.write([items.put(f"old{n}", {"hidden": True})])
    await _synced(catalog, mirror)
    redis_client.flushall()
    await catalog.write([items.put("new", {"hidden": True})])
    await _synced(catalog, mirror)
    assert mirror.withheld == {"new": items.HIDDEN} and mirror.generation == 1


async def test_batches_without_a_catalog_change_read_only_the_generation(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        await client.put("/v1/items/i0", json={"hidden": True})
        await client.get("/v1/users/u1/recommendations?k=3")  # catches up once
        before = _calls(redis_client)
        for n in range(5):
            assert (await client.get(f"/v1/users/u{n}/recommendations?k=3")).status_code == 200
        after = _calls(redis_client)
        await client.put("/v1/items/i1", json={"hidden": True})
        changed = await client.get("/v1/users/u1/recommendations?k=3")
        replayed = _calls(redis_client)
    spent = {name: after.get(name, 0) - before.get(name, 0) for name in _CATALOG_READS}
    # Per request the generation rides along in the user-state pipeline: no catalog read,
    # and one script call per request (the user's state, not the log).
    assert spent == dict.fromkeys(_CATALOG_READS, 0)
    assert after["evalsha"] - before["evalsha"] == 5
    assert "i1" not in changed.text
    # After a write: the log since the last entry is read, not the whole state.
    assert replayed["xrange"] > after["xrange"]
    assert replayed.get("xrevrange", 0) == after.get("xrevrange", 0)  # no snapshot


_CATALOG_READS = ("xrange", "xrevrange", "hgetall", "hget", "exists")


def _calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (those run inside scripts included)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_a_hidden_item_stays_out_across_a_hot_swap(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_client: redis.Redis,
) -> None:
    publish_version(1)
    async with serve() as (app, client):
        first = (await client.get("/v1/users/stranger/recommendations?k=3")).json()
        hidden = first["items"][0]["item_id"]
        await client.put(f"/v1/items/{hidden}", json={"hidden": True})
        on_v1 = (await client.get("/v1/users/stranger/recommendations?k=3")).json()
        # Another catalog in version 2 (its own rows); the hidden item is in it too.
        write_demo_version(artifacts_dir, 2, world=small_world(n_items=120, seed=7))
        publish_version(2, write=False)
        assert await app.state.reloader.check()
        on_v2 = (await client.get("/v1/users/stranger/recommendations?k=3")).json()
        near_v2 = (await client.get("/v1/items/i7/similar?k=119")).json()
    assert on_v1["model_version"] == 1 and on_v2["model_version"] == 2
    assert hidden not in {x["item_id"] for x in on_v1["items"] + on_v2["items"]}
    assert hidden not in {x["item_id"] for x in near_v2["items"]}
    assert len(near_v2["items"]) == 118  # all 120 but itself and the hidden one
