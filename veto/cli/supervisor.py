"""Child processes of ``veto up``: start them, notice one dying, stop them in reverse order.

Children run in their own session so a Ctrl-C in the terminal reaches only ``veto up``, which
then stops them in the right order (trainer before service before Redis). On Linux a child
also gets SIGTERM if ``veto up`` itself is killed, so nothing is left running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (single-threaded parent: safe).
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """A named child process; ``name`` is what error messages call it."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, *, timeout: float) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"veto up: {self.name} ignored SIGTERM for {timeout:g}s, killing it")
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_child(name: str, argv: Sequence[str], *, env: dict[str, str]) -> Child:
    """Start ``argv`` with ``env``; its output goes to ours."""
    process = subprocess.Popen(
        list(argv), env=env, start_new_session=True, preexec_fn=_die_with_parent
    )
    return Child(name, process)


class StopRequest:
    """Set by SIGINT/SIGTERM; polled by the supervising loop."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM by recording them."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signal = signum


def first_dead(children: Sequence[Child]) -> Child | None:
    """The first child that has exited, if any."""
    return next((c for c in children if not c.alive), None)


def wait_until(
    done: Callable[[], bool],
    *,
    children: Sequence[Child],
    stop: StopRequest,
    timeout: float,
    what: str = "ready",
    interval: float = 0.2,
) -> Child | None:
    """Poll ``done`` until it holds; return early (with the dead child, or None on a stop
    request) if a child dies or a stop is requested. TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if stop:
            return None
        dead = first_dead(children)
        if dead is not None:
            return dead
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:g}s")
        time.sleep(interval)
    return None


def stop_all(children: Sequence[Child], *, timeout: float) -> None:
    """Stop ``children`` newest first."""
    for child in reversed(children):
        child.stop(timeout=timeout)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment plus ``extra`` (the children's ``VETO_*`` settings)."""
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
