"""One error hierarchy for both processes.

    VetoError
    ├── InvalidInput            bad request data (details: per-field / per-event errors)
    │   ├── UnknownItem         an item id that is not in the current catalog
    │   └── TooLarge            a batch or body above its limit
    ├── StoreUnavailable        Redis cannot be reached or answered with an error
    ├── ArtifactError           a model version that cannot be loaded or is invalid
    │   ├── NoModelVersion      no version has been published yet
    │   └── UnknownVersion      a version asked for by number that is not on disk
    ├── DatasetError            a dataset file that cannot be read (names file and line)
    ├── ConfigError             a setting that cannot work
    └── GroupLost               a data-parallel trainer's rank died or hung (veto train --nproc)

Adapters translate library errors (``redis.RedisError``, FAISS ``RuntimeError``, ``OSError``)
into these with ``raise ... from``; only the HTTP edge maps them to status codes.
"""

from __future__ import annotations

import sys
from typing import Any


class VetoError(Exception):
    """Base of every error Veto raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(VetoError):
    code = "invalid_input"


class UnknownItem(InvalidInput):
    code = "unknown_item"


class TooLarge(InvalidInput):
    code = "too_large"


class StoreUnavailable(VetoError):
    code = "store_unavailable"


class ArtifactError(VetoError):
    code = "artifact_error"


class NoModelVersion(ArtifactError):
    code = "no_model_version"


class UnknownVersion(ArtifactError):
    code = "unknown_version"


class DatasetError(VetoError):
    code = "dataset_error"

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}", details={"path": path, "line": line})
        self.path = path
        self.line = line


class ConfigError(VetoError):
    code = "config_error"


class GroupLost(VetoError):
    code = "group_lost"


# The exit-code policy of every ``veto`` command (documented in the README):
# 0 done; 1 a dependency failed at run time (Redis, a model version on disk, a rank of a
# data-parallel trainer); 2 bad usage (options, settings, input data). argparse's own errors
# exit 2 as well.
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2


def exit_code(exc: VetoError) -> int:
    """The exit status of a command that stopped on ``exc``."""
    failed = StoreUnavailable | ArtifactError | GroupLost
    return EXIT_UNAVAILABLE if isinstance(exc, failed) else EXIT_USAGE


def report(command: str, exc: VetoError) -> int:
    """Print ``exc`` as the one error line of ``command`` and return its exit status."""
    print(f"{command}: error: {exc.message}", file=sys.stderr)
    return exit_code(exc)
