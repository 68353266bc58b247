"""Real ``veto`` child processes for integration and fault tests: started with ``VETO_*`` from
the caller, output to a log file (a pipe nobody reads would block the child), stopped by
SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from veto.cli.redis_server import free_port


def veto_env(**veto: str) -> dict[str, str]:
    """This process's environment without any inherited ``VETO_*``, plus ``veto``
    (keys without the prefix, e.g. ``REDIS_URL=...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}
    env.update({f"VETO_{k.upper()}": v for k, v in veto.items()})
    return env


def bootstrapped_env(monkeypatch: Any, **veto: str) -> dict[str, str]:
    """Version 1 of a 200-item synthetic catalog, bootstrapped in-process with ``veto`` set
    in this process's environment; the env of ``veto train`` children."""
    from trainer.online import bootstrap

    env = veto_env(**veto)
    for name, value in env.items():
        if name.startswith("VETO_"):
            monkeypatch.setenv(name, value)
    args = ["--dataset", "synthetic", "--items", "200", "--epochs", "1", "--quiet"]
    assert bootstrap.main(args) == 0
    return env


def eventually(
    check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.05
) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class VetoProcess:
    """``veto COMMAND ARGS`` as a child process with its output in ``log_path``."""

    def __init__(
        self, command: str, args: list[str], *, env: Mapping[str, str], log_path: Path
    ) -> None:
        self.command = command
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VetoProcess:
        """Start (or restart) the child; the log is appended to across restarts."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "veto.cli", self.command, *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, *, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class ServeProcess(VetoProcess):
    """``veto serve`` on a free loopback port."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            "serve", ["--host", "127.0.0.1", "--port", str(self.port)], env=env, log_path=log_path
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """True when /readyz answers 200 (a model is loaded and Redis answers)."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> ServeProcess:
        """Block until ready; AssertionError with the log if the child died or timed out."""

        def check() -> bool:
            assert self.running, f"veto serve exited:\n{self.log()}"
            return self.ready()

        try:
            eventually(check, timeout=timeout, what="veto serve to be ready", every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None
        return self


def http_json(
    method: str, url: str, *, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One blocking HTTP call: (status, JSON body, or text when it is not JSON); an error
    status is returned, not raised; (0, reason) when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), _decoded(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decoded(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
