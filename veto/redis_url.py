"""Where Redis is, from ``VETO_REDIS_URL``: one Redis (redis-py's URL) or a Redis Cluster
(``redis+cluster://host:port[,host:port...]``). Parsed here, apart from the clients
(``veto.connection``), so the settings can refuse a malformed URL at start."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from veto.errors import ConfigError

_CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed ``redis+cluster://`` URL."""

    nodes: tuple[tuple[str, int], ...]
    password: str | None
    username: str | None
    ssl: bool


def cluster_address(url: str) -> ClusterAddress | None:
    """The startup nodes of a cluster URL; None for a one-Redis URL; ConfigError when the
    URL names a cluster but not where it is."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _CLUSTER_SCHEMES:
        return None
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ConfigError(
                f"VETO_REDIS_URL: {part.strip()!r} is not host:port "
                "(a cluster URL is redis+cluster://host:port[,host:port...])"
            )
        nodes.append((host.strip("[]"), int(port)))
    return ClusterAddress(tuple(nodes), password, username, _CLUSTER_SCHEMES[scheme.lower()])
