"""Redis clients from ``VETO_REDIS_URL``: one Redis, or a Redis Cluster.

    redis://[:password@]host:port/db                 one Redis (redis-py's URL)
    rediss://...                                     the same over TLS
    redis+cluster://[:password@]host:port[,host:port...]   a Redis Cluster: any masters as
    rediss+cluster://...                             startup nodes (redis-py's RedisCluster
                                                     discovers the rest); no database number

Every process builds its client here (the service its asyncio one, ``connect_async``), so
both read the URL the same way. Code that needs a different command on a cluster asks
``is_cluster(client)``; everything else is written once for both.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.cluster import ClusterNode

from veto.redis_url import ClusterAddress, cluster_address
from veto.settings import CommonSettings

# Trainer calls read whole histories and streams: a serving-size timeout would cut them off.
MIN_TIMEOUT_SECONDS = 5.0

Client: TypeAlias = redis.Redis | redis.RedisCluster
AsyncClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster


def is_cluster(client: Client | AsyncClient) -> bool:
    return isinstance(client, redis.RedisCluster | aioredis.RedisCluster)


def connect(settings: CommonSettings) -> Client:
    """A client of ``settings.redis_url`` (str replies) for the command-line processes."""
    timeout = max(settings.redis_timeout_seconds, MIN_TIMEOUT_SECONDS)
    return connect_url(settings.redis_url, timeout=timeout)


def connect_url(url: str, *, timeout: float = 5.0, decode: bool = True) -> Client:
    """A synchronous client of ``url``, one Redis or a cluster (not yet connected)."""
    address = cluster_address(url)
    options = {**_timeouts(timeout), "decode_responses": decode}
    if address is None:
        return redis.Redis.from_url(url, **options)
    return redis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],  # type: ignore[no-untyped-call]
        **_cluster_options(address),
        **options,
    )


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def _cluster_options(address: ClusterAddress) -> dict[str, Any]:
    """What both cluster clients take from the URL, and the coverage rule."""
    return {
        "password": address.password,
        "username": address.username,
        "ssl": address.ssl,
        # A master down leaves the other masters' slots serving (README, "Redis Cluster").
        "require_full_coverage": False,
    }


def connect_async(url: str, *, timeout: float, **options: Any) -> AsyncClient:
    """An asyncio client of ``url`` (str replies); ``options`` go to redis-py as they are."""
    address = cluster_address(url)
    common = {**_timeouts(timeout), "decode_responses": True, **options}
    if address is None:
        return aioredis.Redis.from_url(url, **common)
    client = aioredis.RedisCluster(
        startup_nodes=[AsyncClusterNode(host, port) for host, port in address.nodes],
        **_cluster_options(address),
        **common,
    )
    _parser_asks_any_master(client)
    return client


def _parser_asks_any_master(client: aioredis.RedisCluster) -> None:
    """After a connection error redis-py re-reads the slot map (from any node that answers)
    and then the command table from the first master only: with that master down, every
    command of the client failed until it came back, the other masters' slots included.
    Here the table comes from the first master that answers, which becomes the default."""
    parser = client.commands_parser
    ask_one = parser.initialize

    async def initialize(node: AsyncClusterNode | None = None) -> None:
        candidates = [node] if node is not None else []
        candidates += [n for n in client.get_primaries() if n is not node]
        failure: Exception | None = None
        for candidate in candidates:
            try:
                await ask_one(candidate)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                failure = exc
                continue
            if candidate is not node:
                client.set_default_node(candidate)
            return
        raise failure or redis.ConnectionError("no Redis Cluster master answers")

    parser.initialize = initialize  # type: ignore[method-assign]
