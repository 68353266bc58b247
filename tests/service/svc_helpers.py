"""Small helpers for the service tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import redis
from fastapi import FastAPI

from trainer.data.synthetic import SyntheticWorld
from veto import keys
from veto.settings import CommonSettings

# ``async with serve(**setting_overrides) as (app, client)`` (the ``serve`` fixture).
Serve = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]

# The service's default partition count (what the service tests run with).
PARTITIONS: int = CommonSettings.model_fields["stream_partitions"].default


def event(user: str, item: str, kind: str, **extra: Any) -> dict[str, Any]:
    """A feedback event body."""
    return {"user_id": user, "item_id": item, "type": kind, **extra}


def items_of(body: dict[str, Any]) -> list[str]:
    return [x["item_id"] for x in body["items"]]


def written_keys(client: redis.Redis) -> list[str]:
    """Every key a request could have created (not the model pointer or the partition
    count, which the service records at start)."""
    return sorted(k for k in client.keys("*") if k not in (keys.MODEL_POINTER, keys.PARTITIONS))


def items_in(world: SyntheticWorld, category: str, n: int | None = None) -> list[str]:
    """The world's items of ``category`` in catalog order (the first ``n``)."""
    found = [i for i, c in zip(world.item_ids, world.categories, strict=True) if c == category]
    return found[:n]


def redis_state(client: redis.Redis) -> dict[Any, bytes | None]:
    """Every key and its serialized value: equal before and after = nothing written (the
    partition count the service records at start is not a request's write)."""
    return {k: client.dump(k) for k in sorted(client.keys("*")) if k != keys.PARTITIONS}


async def recommended(client: httpx.AsyncClient, user: str, **params: Any) -> list[str]:
    """A user's recommended item ids (k = 10 unless given); the answer must be a 200."""
    resp = await client.get(f"/v1/users/{user}/recommendations", params={"k": 10, **params})
    assert resp.status_code == 200, resp.text
    return items_of(resp.json())
