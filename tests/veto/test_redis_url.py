"""VETO_REDIS_URL: one Redis or a cluster's startup nodes; a malformed cluster URL is refused
at start, naming the part that is wrong."""

from __future__ import annotations

import pytest

from veto.errors import ConfigError
from veto.redis_url import ClusterAddress, cluster_address
from veto.settings import ServiceSettings, load_settings


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h:1/2", "unix:///tmp/redis.sock"]
)
def test_a_one_redis_url_is_not_a_cluster(url: str) -> None:
    assert cluster_address(url) is None


def test_a_cluster_url_lists_its_startup_nodes_and_credentials() -> None:
    found = cluster_address("redis+cluster://ann:p%40ss@10.0.0.1:7000,10.0.0.2:7001/")
    assert found == ClusterAddress(
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7001)),
        password="p@ss",
        username="ann",
        ssl=False,
    )
    tls = cluster_address("rediss+cluster://:secret@[::1]:7000")
    assert tls == ClusterAddress(nodes=(("::1", 7000),), password="secret", username=None, ssl=True)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://host",
        "redis+cluster://host:port",
        "redis+cluster://host:0",
        "redis+cluster://host:70000",
        "redis+cluster://h1:7000,,h2:7001",
        "redis+cluster://:7000",
    ],
)
def test_a_malformed_cluster_url_is_refused_at_start(url: str) -> None:
    with pytest.raises(ConfigError, match="not host:port"):
        cluster_address(url)
    with pytest.raises(ConfigError, match="VETO_REDIS_URL"):
        load_settings(ServiceSettings, environ={"VETO_REDIS_URL": url})
