"""The model-version pointer in Redis: which version is current, and the notice of a change.

Publishing sets ``veto:model:current`` and then publishes the version on
``veto:model:notify``; services also poll the pointer, so a lost notice only delays a swap.
Rollback is publishing an older version. ``publish`` is for the command-line processes,
``publish_async`` for the service (``POST /v1/admin/publish``): the same two steps.
"""

from __future__ import annotations

import redis

from veto import keys
from veto.connection import AsyncClient, Client
from veto.errors import NoModelVersion, StoreUnavailable


def publish(client: Client, version: int) -> None:
    """Make ``version`` current and tell the services."""
    try:
        client.set(keys.MODEL_POINTER, str(version))
        client.publish(keys.MODEL_CHANNEL, str(version))
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot publish version {version}: {exc}") from exc


async def publish_async(client: AsyncClient, version: int) -> None:
    """``publish`` on the service's asyncio client."""
    try:
        await client.set(keys.MODEL_POINTER, str(version))
        await client.publish(keys.MODEL_CHANNEL, str(version))
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot publish version {version}: {exc}") from exc


def current(client: Client) -> int:
    """The current version; NoModelVersion if none was published."""
    try:
        raw = client.get(keys.MODEL_POINTER)
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot read the model pointer: {exc}") from exc
    if raw is None:
        raise NoModelVersion("no model version has been published")
    return int(raw)
