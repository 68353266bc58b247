"""Validation of user and item ids before they reach a Redis key or an artifact file."""

from __future__ import annotations

import re

from veto.errors import InvalidInput

MAX_ID_LENGTH = 128
# Printable, no whitespace, no braces (they would break the Redis hash tag) and no "|"
# (the history entry separator).
ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """True when ``value`` may be used as a user or item id."""
    return bool(_ID_RE.match(value))


def check_id(value: str, *, kind: str) -> str:
    """Return ``value`` or raise InvalidInput naming what is wrong with it."""
    if not is_valid_id(value):
        raise InvalidInput(
            f"invalid {kind} id {value[:40]!r}: 1-{MAX_ID_LENGTH} characters "
            "of letters, digits and _ . : @ -"
        )
    return value
