"""A real Redis Cluster on loopback: N masters, each a ``RedisServer`` child in cluster mode,
joined by ``redis-cli --cluster create`` (the same binaries ``veto up`` embeds). What the
test suite and the benchmarks run cluster behaviour against.

Two options matter for Veto and are what a deployment should set too (README, "Redis
Cluster"): ``cluster-require-full-coverage no``, so the slots of the masters still up keep
serving while one master is down (the default refuses every command then), and AOF with
``appendfsync always`` where an acknowledged event must survive a SIGKILL.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from veto.cli.redis_server import RedisServer, find_binary, port_free
from veto.errors import ConfigError

# A node listens on its port and on port + 10000 (the cluster bus).
_BUS_OFFSET = 10_000


def cluster_ports(n: int) -> list[int]:
    """``n`` ports whose bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + _BUS_OFFSET < 65_536 and port not in ports and port_free(port + _BUS_OFFSET):
            ports.append(port)
        elif port + _BUS_OFFSET >= 65_536:
            # The kernel hands out high ports: take one from the low half of its range.
            for candidate in range(20_000 + 97 * len(ports), 50_000, 97):
                if (
                    candidate not in ports
                    and port_free(candidate)
                    and port_free(candidate + _BUS_OFFSET)
                ):
                    ports.append(candidate)
                    break
    return ports


@dataclass
class RedisCluster:
    """``masters`` redis-server processes in cluster mode, every slot assigned, no replicas."""

    data_dir: Path
    masters: int = 3
    appendfsync: str = "everysec"
    # How long a master may be unreachable before the others mark its slots failed.
    node_timeout_ms: int = 2000
    nodes: list[RedisServer] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """``VETO_REDIS_URL`` of this cluster: every master as a startup node."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self, timeout: float = 30.0) -> RedisCluster:
        if self.masters < 3:
            raise ConfigError("a Redis Cluster needs at least 3 masters")
        ports = cluster_ports(self.masters)
        for i, port in enumerate(ports):
            node = RedisServer(
                data_dir=self.data_dir / f"node{i}",
                port=port,
                appendfsync=self.appendfsync,
                extra_args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--cluster-require-full-coverage", "no",
                ),
            )  # fmt: skip
            self.nodes.append(node.start())
        create = [find_binary("redis-cli"), "--cluster", "create"]
        create += [f"127.0.0.1:{p}" for p in ports]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            self.stop()
            raise ConfigError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node reports ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._node_ok(n) for n in self.nodes):
                return
            if time.monotonic() > deadline:
                raise ConfigError(f"the cluster did not reach cluster_state:ok in {timeout} s")
            time.sleep(0.05)

    def _node_ok(self, node: RedisServer) -> bool:
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=0.5)
        try:
            # redis-py parses CLUSTER INFO into a dict of strings.
            fields: dict[str, str] = client.cluster("INFO")
            return (
                fields.get("cluster_state") == "ok"
                and int(fields.get("cluster_known_nodes", 0)) == len(self.nodes)
                and int(fields.get("cluster_slots_ok", 0)) == 16384
            )
        except redis.RedisError:
            return False
        finally:
            client.close()

    def node_of(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot."""
        wanted = key_slot(key.encode())
        for node in self.nodes:
            client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=0.5)
            try:
                rows = client.cluster("SLOTS")
            except redis.RedisError:
                continue  # a node that is down: another one knows the slot map
            finally:
                client.close()
            for row in rows:
                start, end, master = int(row[0]), int(row[1]), row[2]
                if start <= wanted <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise ConfigError(f"no master serves the slot of {key!r}")

    def flush(self) -> None:
        """Empty every master (the test fixtures' per-test reset)."""
        for node in self.nodes:
            client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2.0)
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self, *, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
