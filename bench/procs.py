"""Child processes of the harness: ``veto serve``, ``veto train`` and the bare FastAPI
references, each logging to a file (a pipe nobody reads would block a long soak)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import wait_ready
from veto.cli.redis_server import RedisServer, free_port

PARTITIONS = 8
HISTORY_LEN = 50


def veto_env(*, redis_url: str, artifacts: Path, api_key: str | None = None) -> dict[str, str]:
    """The ``VETO_*`` environment of the service and the trainer."""
    env = {
        **os.environ,
        "VETO_REDIS_URL": redis_url,
        "VETO_ARTIFACTS_DIR": str(artifacts),
        "VETO_STREAM_PARTITIONS": str(PARTITIONS),
        "VETO_HISTORY_LEN": str(HISTORY_LEN),
    }
    if api_key:
        env["VETO_API_KEY"] = api_key
    return env


@dataclass
class Child:
    """A started child process and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS of /proc/<pid>/status)."""
        return rss_bytes(self.proc.pid)

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_bytes(pid: int) -> int:
    """VmRSS of a process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start(
    name: str,
    cmd: list[str],
    *,
    env: dict[str, str],
    logdir: Path,
    port: int = 0,
    cwd: Path | None = None,
) -> Child:
    """Start ``cmd`` (in ``cwd``) with its stdout and stderr in ``logdir/<name>.log``."""
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    return Child(name=name, proc=proc, log=log, port=port)


def ready(child: Child, *, timeout: float = 300.0) -> Child:
    """Wait until the child's /readyz answers 200; fail with its log tail if it died."""
    try:
        wait_ready(f"{child.url}/readyz", timeout=timeout)
    except TimeoutError as exc:
        raise RuntimeError(f"{child.name} not ready:\n{child.tail()}") from exc
    return child


def serve(*, env: dict[str, str], logdir: Path, name: str = "service") -> Child:
    """``veto serve`` on a free port (one uvicorn worker), started and ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "veto.cli", "serve", "--port", str(port), "--log-level", "warning"]
    return ready(start(name, cmd, env=env, logdir=logdir, port=port))


def bare(factory: str, *, env: dict[str, str], logdir: Path, name: str) -> Child:
    """A bare FastAPI reference app (``module:factory``) in uvicorn with one worker, ready."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return ready(start(name, cmd, env=env, logdir=logdir, port=port))


def train(*, env: dict[str, str], logdir: Path, interval: float) -> Child:
    """``veto train`` with a round every ``interval`` seconds and no metrics server."""
    cmd = [
        sys.executable,
        "-m",
        "veto.cli",
        "train",
        "--metrics-port",
        "0",
        "--interval",
        str(interval),
    ]
    return start("trainer", cmd, env=env, logdir=logdir)


def scrape(child: Child) -> dict[str, float]:
    """The child's /metrics as {sample name: value summed over labels}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{child.url}/metrics", timeout=10.0).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def bootstrap(env: dict[str, str], n_items: int, logdir: Path) -> None:
    """``veto bootstrap`` a synthetic catalog (version 1 with a trainer checkpoint)."""
    logdir.mkdir(parents=True, exist_ok=True)
    args = ["bootstrap", "--items", str(n_items), "--epochs", "1", "--quiet"]
    with (logdir / "bootstrap.log").open("wb") as log:
        subprocess.run(
            [sys.executable, "-m", "veto.cli", *args],
            env=env,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@dataclass
class LiveStack:
    """A Redis (``appendfsync always``) with a bootstrapped catalog; the processes a
    benchmark starts against it go in ``children`` and are stopped with the Redis."""

    server: RedisServer
    env: dict[str, str]
    logdir: Path
    bootstrap_seconds: float
    children: list[Child] = field(default_factory=list)


@contextmanager
def live_stack(
    workdir: Path,
    *,
    n_items: int,
    interval: float,
    api_key: str,
    settings: dict[str, str] | None = None,
) -> Iterator[LiveStack]:
    """Redis in ``workdir``, ``veto bootstrap`` of ``n_items``, the trainer interval and any
    other ``VETO_*`` ``settings`` in the environment the benchmark's processes get."""
    server = RedisServer(data_dir=workdir / "redis", appendfsync="always").start()
    children: list[Child] = []
    try:
        env = veto_env(redis_url=server.url, artifacts=workdir / "artifacts", api_key=api_key)
        env.update({"VETO_INTERVAL_SECONDS": str(interval), **(settings or {})})
        logdir = workdir / "logs"
        t0 = time.perf_counter()
        bootstrap(env, n_items, logdir)
        stack = LiveStack(server, env, logdir, time.perf_counter() - t0, children)
        yield stack
    finally:
        for child in children:
            child.stop()
        server.stop()
