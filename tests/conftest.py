"""Fixtures shared by every test: a real redis-server per session, flushed per test; and a
real 3-master Redis Cluster per session for the modules that run against both.

A module opts in to the cluster with

    pytestmark = pytest.mark.parametrize("redis_backend", BOTH, indirect=True)

and its tests then run once against one Redis and once against the cluster: ``redis_url``
(and everything built on it) points at the one or the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from veto.cli.redis_cluster import RedisCluster
from veto.cli.redis_server import RedisServer
from veto.connection import Client, connect_url

BOTH = ["redis", "cluster"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, data in a temp dir."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free loopback ports, data in a temp dir."""
    cluster = RedisCluster(data_dir=tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """ "redis" (one server) unless a module parametrizes it with "cluster" too."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_backend: str) -> Iterator[str]:
    """The URL of the session's Redis (or cluster), emptied before each test."""
    if redis_backend == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        for node in cluster.nodes:
            if node.process is None or node.process.poll() is not None:
                node.start()  # a test killed it
        cluster.wait_ok()
        cluster.flush()
        yield cluster.url
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test stopped it to simulate an outage
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Client]:
    """A client of ``redis_url``: one Redis or the cluster (str replies)."""
    client = connect_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> Path:
    path = tmp_path / "artifacts"
    path.mkdir()
    return path
