"""The feedback event, as clients send it, as the service logs it and as the trainer reads it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class EventType(enum.IntEnum):
    """Feedback types. Codes below ``N_EVENT_TYPES`` are the rows of the encoder's type
    tables: never reorder them.

    ``WITHDRAW`` takes back the user's like or dislike of an item. It is a decision, not an
    encoder input: it has no row (the tables of every published version keep their 4 rows, so
    old versions load and warm-start unchanged), and a history entry of code 4 is a withdrawn
    like or dislike, which every reader of the history skips (``is_encoded``)."""

    LIKE = 0
    DISLIKE = 1
    CLICK = 2
    SKIP = 3
    WITHDRAW = 4

    @classmethod
    def parse(cls, name: str) -> EventType:
        return _BY_LABEL.get(name) or cls[name.upper()]

    @property
    def label(self) -> str:
        # A lookup, not name.lower(): an enum's name is a descriptor call, and the write path
        # asks for the label of every event of every batch.
        return _LABELS[self]


_LABELS = {t: t.name.lower() for t in EventType}
_BY_LABEL = {label: t for t, label in _LABELS.items()}
# Rows of the encoder's type tables: the types a history entry feeds the encoder with.
N_EVENT_TYPES = 4
# The types that decide an item's place in the liked / disliked sets: the latest by timestamp
# wins (``service.feedback_store``).
DECISIONS = frozenset({EventType.LIKE, EventType.DISLIKE, EventType.WITHDRAW})


def is_encoded(code: int) -> bool:
    """Whether a history entry of this type code is encoder input (a row of its tables)."""
    return 0 <= code < N_EVENT_TYPES


def encode_entry(item_id: str, type: EventType, timestamp: float) -> str:
    """A history entry as Redis keeps it (``HistoryEntry.encode``), without building one."""
    return f"{int(type)}|{item_id}|{timestamp!r}"


class Interaction(NamedTuple):
    """One feedback event of a dataset, as the trainer learns from it (oldest first).

    A named tuple: datasets hold millions and a round decodes thousands, and a frozen
    dataclass costs several times more to build."""

    user_id: str
    item_id: str
    type: EventType
    timestamp: float


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One piece of feedback.

    ``timestamp`` is when it happened (client clock, seconds); ``ingest_time`` is when the
    service accepted it (server clock, seconds) and drives the feedback-to-model lag.
    """

    event_id: str
    user_id: str
    item_id: str
    type: EventType
    timestamp: float
    ingest_time: float

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis stream entry."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type.label,
            "ts": repr(self.timestamp),
            "ingest": repr(self.ingest_time),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> FeedbackEvent:
        """Inverse of ``to_fields``."""
        return cls(
            event_id=fields["event_id"],
            user_id=fields["user_id"],
            item_id=fields["item_id"],
            type=EventType.parse(fields["type"]),
            timestamp=float(fields["ts"]),
            ingest_time=float(fields["ingest"]),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event of a user's recent history, as kept in Redis (newest first)."""

    item_id: str
    type: EventType
    timestamp: float

    def encode(self) -> str:
        return encode_entry(self.item_id, self.type, self.timestamp)

    @classmethod
    def decode(cls, raw: str) -> HistoryEntry:
        type_code, item_id, ts = raw.split("|", 2)
        return cls(item_id=item_id, type=EventType(int(type_code)), timestamp=float(ts))
