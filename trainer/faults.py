"""Crash points for the fault tests, armed only by the ``VETO_TRAINER_FAULT`` variable.

tests/faults/test_trainer_crash.py sets ``VETO_TRAINER_FAULT`` to one of ``POINTS`` to kill a
``veto train`` process at a precise place of a round: the process ends with
``os._exit(FAULT_EXIT_CODE)``, which skips every ``finally``, flush and handler, as SIGKILL
would. Unset (always, outside those tests), ``crash_point`` does nothing.
"""

from __future__ import annotations

import os

ENV = "VETO_TRAINER_FAULT"
# In round order: after fine-tuning, inside write_version (temp dir half-written), after the
# version directory is in place but before the pointer moves, after publishing before the ack.
POINTS = ("after_fit", "mid_export", "before_publish", "before_ack")
FAULT_EXIT_CODE = 70


def crash_point(name: str) -> None:
    """Die here, at once, when ``VETO_TRAINER_FAULT`` names this point."""
    if os.environ.get(ENV) == name:
        os._exit(FAULT_EXIT_CODE)
