"""The user API's logic between the routes and Redis: erasure, and the access request's
pages over what Veto holds (history newest first, then liked, then disliked items).

A page cursor names the section and the last record returned (a history entry by its item
and timestamp, a set member by itself), not a position: entries written between two pages
shift positions but not the records, so a static state is covered exactly once, and an entry
written meanwhile is never returned twice. (An entry rewritten as withdrawn keeps its item and
timestamp; only its type changes.)
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from dataclasses import dataclass

from service.errors import FieldError, invalid_fields
from service.schemas import Erased, HeldEntry, UserData
from service.user_store import HeldState, UserStore
from veto.events import N_EVENT_TYPES, EventType

SECTIONS = ("history", "liked", "disliked")


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after ``after`` in ``section`` (None: at its start);
    ``offset`` is the history position the entry had, used if it is gone."""

    section: str = "history"
    after: str | None = None
    offset: int = 0

    def encode(self) -> str:
        raw = json.dumps([self.section, self.after, self.offset], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor of ``token``; InvalidInput (422) for anything ``encode`` did not make."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            section, after, offset = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise _bad_cursor() from None
        if (
            section not in SECTIONS
            or not (after is None or isinstance(after, str))
            or not isinstance(offset, int)
            or offset < 0
        ):
            raise _bad_cursor()
        return cls(section, after, offset)


def _bad_cursor() -> Exception:
    error = FieldError(location="query", index=None, field="cursor", message="not a cursor")
    return invalid_fields("invalid cursor", [error])


def _identity(entry: str) -> str:
    """A history entry without its type: what survives a withdraw's rewrite."""
    return entry.split("|", 1)[1]


def _held_entry(entry: str) -> HeldEntry:
    code, item_id, ts = entry.split("|", 2)
    n = int(code)
    kind = EventType(n).label if n < N_EVENT_TYPES else "withdrawn"
    return HeldEntry(item_id=item_id, type=kind, timestamp=float(ts))


def _history_start(history: list[str], cursor: Cursor) -> int:
    if cursor.after is None:
        return 0
    ids = [_identity(e) for e in history]
    if cursor.after in ids:
        return ids.index(cursor.after) + 1
    return min(cursor.offset, len(history))  # trimmed away: the older ones follow it


def page_of(user_id: str, state: HeldState, *, limit: int, cursor: Cursor) -> UserData:
    """At most ``limit`` records from ``cursor`` on, and the cursor of the rest."""
    chosen: dict[str, list[str]] = {name: [] for name in SECTIONS}
    left = limit
    following: Cursor | None = None
    first = SECTIONS.index(cursor.section)
    for i, name in enumerate(SECTIONS[first:], start=first):
        records = state.history if name == "history" else getattr(state, name)
        if name != cursor.section:
            start = 0
        elif name == "history":
            start = _history_start(records, cursor)
        else:
            start = 0 if cursor.after is None else bisect_right(records, cursor.after)
        chunk = records[start : start + left]
        chosen[name] = chunk
        left -= len(chunk)
        if left == 0:
            end = start + len(chunk)
            rest = len(records) > end or any(
                (state.history if later == "history" else getattr(state, later))
                for later in SECTIONS[i + 1 :]
            )
            if rest:  # chunk is not empty: the page ended inside it
                last = _identity(chunk[-1]) if name == "history" else chunk[-1]
                following = Cursor(name, last, end)
            break
    return UserData(
        user_id=user_id,
        history=[_held_entry(e) for e in chosen["history"]],
        liked=chosen["liked"],
        disliked=chosen["disliked"],
        next_cursor=None if following is None else following.encode(),
    )


class UserDesk:
    """Erases users and answers their access requests."""

    def __init__(self, store: UserStore) -> None:
        self._store = store

    async def erase(self, user_id: str) -> Erased:
        """Delete everything Veto holds of the user in Redis; 0 counts if nothing."""
        done = await self._store.erase(user_id)
        return Erased(
            user_id=user_id,
            keys_deleted=done.keys,
            stream_entries_deleted=done.stream_entries,
            dedupe_markers_deleted=done.dedupe_markers,
        )

    async def held(self, user_id: str, *, limit: int, cursor: str | None) -> UserData:
        """One page of what Veto holds about the user (cursor checked before any read)."""
        where = Cursor() if cursor is None else Cursor.decode(cursor)
        state = await self._store.held(user_id)
        return page_of(user_id, state, limit=limit, cursor=where)
