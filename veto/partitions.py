"""The deployment's partition count, recorded in Redis so that no process can use another.

``VETO_STREAM_PARTITIONS`` decides every user's hash tag (``veto.keys.partition_of``): a
process with another count would read and write a user's state under other keys than the
rest of the deployment. The first process to start records its count in
``veto:config:partitions``; every process compares its own with it at start and refuses to
run on a difference. A Redis that predates the record records the number of streams that
carry the trainer's consumer group (a trainer creates it on every partition at start), if any.

Changing the count of a live deployment is not supported in place: README, "Redis Cluster",
gives the procedure (a new Redis with the new count, re-seeded from the served version).
"""

from __future__ import annotations

from typing import Any

import redis

from veto import keys
from veto.connection import AsyncClient, Client
from veto.errors import ConfigError, StoreUnavailable

# Stream names probed on a Redis without the record (the setting's upper bound).
_MAX_PARTITIONS = 1024


def _mismatch(recorded: int, wanted: int) -> ConfigError:
    return ConfigError(
        f"VETO_STREAM_PARTITIONS is {wanted} but this deployment's Redis was set up with "
        f"{recorded} partitions (key {keys.PARTITIONS}): set VETO_STREAM_PARTITIONS={recorded}. "
        "Changing it needs a new Redis (README, 'Redis Cluster')"
    )


def _grouped(replies: list[Any]) -> int:
    """How many of the streams (their XINFO GROUPS replies) carry the trainer's group."""
    return sum(
        1 for groups in replies if any(g["name"] == keys.CONSUMER_GROUP for g in groups or [])
    )


def _decide(recorded: Any, existing: int, wanted: int) -> tuple[int, bool]:
    """(the deployment's count, whether to record it)."""
    if recorded is not None:
        return int(recorded), False
    return (existing or wanted), True


def check(client: Client, partitions: int) -> None:
    """Record or verify the partition count (synchronous processes)."""
    try:
        recorded = client.get(keys.PARTITIONS)
        existing = 0
        if recorded is None:
            pipe = client.pipeline(transaction=False)
            for p in range(_MAX_PARTITIONS):
                pipe.exists(keys.stream(p))
            found = [p for p, n in enumerate(pipe.execute()) if int(n)]
            pipe = client.pipeline(transaction=False)
            for p in found:
                pipe.xinfo_groups(keys.stream(p))
            existing = _grouped(pipe.execute())
        count, record = _decide(recorded, existing, partitions)
        if record and not client.set(keys.PARTITIONS, count, nx=True):
            count = int(str(client.get(keys.PARTITIONS)))  # another process won the race
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot check the partition count: {exc}") from exc
    if count != partitions:
        raise _mismatch(count, partitions)


async def check_async(client: AsyncClient, partitions: int) -> None:
    """``check`` for the service's asyncio client."""
    try:
        recorded = await client.get(keys.PARTITIONS)
        existing = 0
        if recorded is None:
            async with client.pipeline(transaction=False) as pipe:
                for p in range(_MAX_PARTITIONS):
                    pipe.exists(keys.stream(p))
                found = [p for p, n in enumerate(await pipe.execute()) if int(n)]
            async with client.pipeline(transaction=False) as pipe:
                for p in found:
                    pipe.xinfo_groups(keys.stream(p))
                existing = _grouped(await pipe.execute())
        count, record = _decide(recorded, existing, partitions)
        if record and not await client.set(keys.PARTITIONS, count, nx=True):
            count = int(str(await client.get(keys.PARTITIONS)))
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot check the partition count: {exc}") from exc
    if count != partitions:
        raise _mismatch(count, partitions)
