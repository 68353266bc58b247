"""``veto train`` with a crash hook: ``python -m tests.faults.crashing_trainer POINT ARGS...``
runs the trainer and dies at crash point POINT with ``os._exit(EXIT_CODE)``, which skips
every ``finally``, flush and handler, as SIGKILL would, but at an exact place of a round."""

from __future__ import annotations

import os
import sys

from trainer.online.loop import CRASH_POINTS
from trainer.online.main import main

EXIT_CODE = 70


def crash_at(point: str) -> None:
    """Kill the process at ``point``; ValueError for a point the trainer does not have."""
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; the trainer has {CRASH_POINTS}")

    def hook(reached: str) -> None:
        if reached == point:
            os._exit(EXIT_CODE)

    raise SystemExit(main(sys.argv[2:], hook=hook))


if __name__ == "__main__":
    crash_at(sys.argv[1])
