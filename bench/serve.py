"""The serving benchmark's two sides, for ``bench.run`` (``make bench-serve``): the catalog
and histories it seeds (a model version, every user's history, liked and disliked sets) and
the bare FastAPI reference app (a fixed 10-item list in the service's response shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI

from trainer.data.synthetic import make_world
from trainer.online.index import build_index
from veto import registry
from veto.artifacts import Watermark, write_version
from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES, EventType, HistoryEntry
from veto.keys import UserKeys
from veto.settings import TrainerSettings

PARTITIONS = 8
HISTORY_LEN = 50


def bare_app() -> FastAPI:
    """The reference: the same route and response shape, a fixed list, no work."""
    app = FastAPI()
    items = [{"item_id": f"i{n}", "score": 1.0 - n / 100} for n in range(10)]

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(user_id: str, k: int = 10) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "items": items,
            "model_version": 1,
            "request_id": "0" * 32,
            "degraded": False,
        }

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def seed_catalog(
    root: Path, client: redis.Redis, *, n_items: int, n_users: int, flat_max: int
) -> str:
    """Write version 1 and every user's history, liked and disliked sets; return index type."""
    world = make_world(
        n_items=n_items, n_users=n_users, n_categories=50, dim=64, events_per_user=20, seed=1
    )
    encoder = UserEncoder.initial(dim=64, history_len=HISTORY_LEN, n_types=N_EVENT_TYPES)
    path = write_version(
        root,
        version=1,
        parent=None,
        item_ids=world.item_ids,
        categories=world.categories,
        vectors=world.item_vectors,
        encoder=encoder,
        popular=world.item_ids[:100],
        loss={"objective": "bench"},
        watermark=Watermark(),
        index=build_index(
            world.item_vectors, flat_max_items=flat_max, nprobe=TrainerSettings().nprobe
        ),
    )
    pipe = client.pipeline(transaction=False)
    for n, it in enumerate(world.interactions):
        uk = UserKeys(it.user_id, PARTITIONS)
        pipe.lpush(uk.history, HistoryEntry(it.item_id, it.type, it.timestamp).encode())
        if it.type == EventType.LIKE:
            pipe.sadd(uk.liked, it.item_id)
        elif it.type == EventType.DISLIKE:
            pipe.sadd(uk.disliked, it.item_id)
        if n % 20_000 == 19_999:
            pipe.execute()
    pipe.execute()
    registry.publish(client, 1)
    return str(path.name) + ":" + _index_type(path)


def _index_type(path: Path) -> str:
    import json

    return str(json.loads((path / "manifest.json").read_text())["index_type"])
