"""Reading dataset files line by line, plain or gzip, with errors that name file and line."""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from veto.errors import ConfigError, DatasetError
from veto.events import EventType, Interaction
from veto.ids import is_valid_id

_GZIP_MAGIC = b"\x1f\x8b"


def open_lines(path: Path, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end) of a plain or gzip text file."""
    try:
        with path.open("rb") as probe:
            gz = probe.read(2) == _GZIP_MAGIC
        opener = gzip.open if gz else open
        with (
            opener(path, "rb") as raw,
            io.TextIOWrapper(raw, encoding=encoding, newline="") as text,
        ):
            for number, line in enumerate(text, start=1):
                yield number, line.rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read: {exc}", path=str(path)) from exc


def parse_int(value: str, *, what: str, path: Path, line: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        msg = f"{what} {value[:40]!r} is not an integer"
        raise DatasetError(msg, path=str(path), line=line) from None


def parse_float(value: str, *, what: str, path: Path, line: int) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise DatasetError(
            f"{what} {value[:40]!r} is not a finite number", path=str(path), line=line
        )
    return number


def check_dataset_id(value: str, *, kind: str, path: Path, line: int) -> str:
    """The id, or DatasetError: ids become Redis keys and artifact entries."""
    if not is_valid_id(value):
        msg = f"invalid {kind} id {value[:40]!r} (1-128 letters, digits, _ . : @ -)"
        raise DatasetError(msg, path=str(path), line=line)
    return value


class RatingMap:
    """Star ratings to feedback: >= like_min like, <= dislike_max dislike, in between a
    click (kept as neutral input context, not a training label by default)."""

    def __init__(self, *, like_min: float, dislike_max: float, low: float, high: float) -> None:
        if not dislike_max < like_min:
            raise ConfigError(f"dislike_max ({dislike_max}) must be below like_min ({like_min})")
        self.like_min, self.dislike_max, self.low, self.high = like_min, dislike_max, low, high

    def __call__(self, rating: float, *, path: Path, line: int) -> EventType:
        if not self.low <= rating <= self.high:
            msg = f"rating {rating:g} is outside {self.low:g}..{self.high:g}"
            raise DatasetError(msg, path=str(path), line=line)
        if rating >= self.like_min:
            return EventType.LIKE
        if rating <= self.dislike_max:
            return EventType.DISLIKE
        return EventType.CLICK


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError("file not found", path=str(path))
    return path


def sort_by_time(interactions: Sequence[Interaction]) -> list[Interaction]:
    """Oldest first; ties keep file order (the sort is stable)."""
    return sorted(interactions, key=lambda x: x.timestamp)
