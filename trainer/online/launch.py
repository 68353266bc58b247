"""``veto train --nproc N``: start N ranks of a data-parallel trainer on this machine, watch them.

Each rank is ``veto train`` again, without ``--nproc`` and with torchrun's variables (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR = 127.0.0.1, MASTER_PORT = a free port) plus
``VETO_THREADS`` = max(1, VETO_THREADS // N), so the ranks share the threads one process
would have. Rank 0 is the trainer (Redis, versions, metrics); the others train its shards
(``trainer.learn.parallel``). Started by torchrun instead, ``veto train`` reads the same
variables and behaves the same.

Exit status: rank 0's, once it has ended and the others with it (0 after ``--once`` or a stop
signal). A rank that ends before rank 0 (killed, crashed) is a failure: the launcher stops
the others (SIGTERM, then SIGKILL after ``GRACE_SECONDS``) and exits 1. Rank 0 publishes
nothing from a round a rank left (its next collective fails) and that round's events stay
pending for the next start. SIGINT and SIGTERM to the launcher go to rank 0, which stops
between rounds and releases the others. The ranks run in their own session (a Ctrl-C reaches
only the launcher) and get SIGTERM if the launcher dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from veto.errors import ConfigError

GRACE_SECONDS = 30.0  # for the ranks to end after rank 0 did, or after a stop
_PR_SET_PDEATHSIG = 1


def max_ranks() -> int:
    """The CPUs this process may run on: more ranks than that only adds all-reduce work."""
    return len(os.sched_getaffinity(0))


def check_nproc(nproc: int, *, in_group: bool) -> None:
    """ConfigError for a rank count that cannot work here."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    limit = max_ranks()
    if nproc > limit:
        raise ConfigError(
            f"--nproc {nproc} is more than the {limit} CPUs this machine gives the trainer "
            "(at most one rank per CPU)"
        )
    if nproc > 1 and in_group:
        raise ConfigError(
            "--nproc under torchrun (RANK and WORLD_SIZE are set): use one or the other"
        )


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` minus its ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (as veto up's children do).
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ended(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _stop(ranks: Sequence[subprocess.Popen[bytes]], *, grace: float) -> None:
    """SIGTERM every running rank, SIGKILL what is left after ``grace`` seconds."""
    for proc in ranks:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in ranks:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch(
    argv: Sequence[str], *, nproc: int, threads: int, environ: Mapping[str, str] | None = None
) -> int:
    """Run ``veto train argv`` as ``nproc`` ranks until rank 0 ends; the exit status."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        VETO_THREADS=str(max(1, threads // nproc)),
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "veto.cli", "train", *without_nproc(argv)]
    ranks = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        for r in range(nproc)
    ]
    print(f"veto train: {nproc} ranks, pids {' '.join(str(p.pid) for p in ranks)}", flush=True)

    def forward(_signum: int, _frame: object) -> None:
        if ranks[0].poll() is None:
            ranks[0].terminate()  # rank 0 stops between rounds and releases the others

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            # A rank other than 0 ends with status 0 only when rank 0 released it.
            first = next(
                (
                    r
                    for r, p in enumerate(ranks)
                    if p.poll() is not None and (r == 0 or p.returncode)
                ),
                None,
            )
            if first is not None:
                break
            time.sleep(0.1)
        code = ranks[first].returncode
        if first != 0:
            print(
                f"veto train: error: rank {first} {_ended(code)}; stopping the other ranks "
                "(the round in progress publishes nothing, its events stay pending)",
                file=sys.stderr,
                flush=True,
            )
            _stop(ranks, grace=GRACE_SECONDS)
            return 1
        if code < 0:  # rank 0 could not say why itself
            print(f"veto train: error: rank 0 {_ended(code)}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + GRACE_SECONDS  # they were released, or will see it gone
        while time.monotonic() < deadline and any(p.poll() is None for p in ranks):
            time.sleep(0.1)
        _stop(ranks, grace=1.0)  # whatever still runs after the grace period
        failed = [r for r, p in enumerate(ranks) if r and p.returncode != 0]
        if code == 0 and failed:
            print(f"veto train: error: ranks {failed} did not end cleanly", file=sys.stderr)
            return 1
        return 1 if code < 0 else code
    finally:
        _stop(ranks, grace=GRACE_SECONDS)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
