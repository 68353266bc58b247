"""Users' recent histories into Redis, in the layout the service writes (``veto.keys``):
history list newest first of ``HistoryEntry.encode()`` trimmed to ``history_len``, and the
liked / disliked sets as the service leaves them (the last like or dislike of an item wins)."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from tqdm import tqdm  # type: ignore[import-untyped]

from veto.errors import StoreUnavailable
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys
from veto.synthetic import Interaction

_CHUNK = 500  # users per pipeline round trip


def _user_state(events: Sequence[Interaction]) -> tuple[set[str], set[str]]:
    """Liked and disliked item sets after replaying a user's events (oldest first)."""
    liked: set[str] = set()
    disliked: set[str] = set()
    for x in events:
        if x.type == EventType.LIKE:
            liked.add(x.item_id)
            disliked.discard(x.item_id)
        elif x.type == EventType.DISLIKE:
            disliked.add(x.item_id)
            liked.discard(x.item_id)
    return liked, disliked


def load_histories(
    client: redis.Redis,
    interactions: Sequence[Interaction],
    *,
    partitions: int,
    history_len: int,
    progress: bool = False,
) -> int:
    """Replace each user's history and sets with those of ``interactions`` (oldest first).

    Returns the number of users written. Raises StoreUnavailable on a Redis error.
    """
    by_user: dict[str, list[Interaction]] = {}
    for x in interactions:
        by_user.setdefault(x.user_id, []).append(x)
    users = list(by_user)
    try:
        for start in tqdm(
            range(0, len(users), _CHUNK), desc="histories", unit="chunk", disable=not progress
        ):
            pipe = client.pipeline(transaction=False)
            for user in users[start : start + _CHUNK]:
                events = by_user[user]
                keys = UserKeys(user, partitions)
                recent = events[::-1][:history_len]  # newest first
                liked, disliked = _user_state(events)
                pipe.delete(keys.history, keys.liked, keys.disliked)
                pipe.rpush(
                    keys.history,
                    *[HistoryEntry(x.item_id, x.type, x.timestamp).encode() for x in recent],
                )
                if liked:
                    pipe.sadd(keys.liked, *liked)
                if disliked:
                    pipe.sadd(keys.disliked, *disliked)
            pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot write histories: {exc}") from exc
    return len(users)
