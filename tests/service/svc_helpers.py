"""Small helpers for the service tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import redis
from fastapi import FastAPI

from veto import keys

# ``async with serve(**setting_overrides) as (app, client)`` (the ``serve`` fixture).
Serve = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


def event(user: str, item: str, kind: str, **extra: Any) -> dict[str, Any]:
    """A feedback event body."""
    return {"user_id": user, "item_id": item, "type": kind, **extra}


def items_of(body: dict[str, Any]) -> list[str]:
    return [x["item_id"] for x in body["items"]]


def written_keys(client: redis.Redis) -> list[str]:
    """Every key a request could have created (the model pointer is not one)."""
    return sorted(k for k in client.keys("*") if k != keys.MODEL_POINTER)
