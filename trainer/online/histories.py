"""Users' recent histories in Redis, in the layout the service writes (``veto.keys``): a list
newest first of ``HistoryEntry.encode()`` trimmed to ``history_len``, and the liked /
disliked sets as the service leaves them (the last like or dislike of an item wins).

``veto bootstrap`` writes them (``load_histories``); a trainer round reads them back as the
context of its events (``fetch_histories``, ``round_interactions``). The service writes an
event's history entry in the same transaction as its stream entry, so a round finds the
entry (same item, type and timestamp) in the user's list; if it was already trimmed away,
the event is placed after the entries older than its timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis
from tqdm import tqdm  # type: ignore[import-untyped]

from veto.connection import Client
from veto.errors import StoreUnavailable
from veto.events import N_EVENT_TYPES, EventType, FeedbackEvent, HistoryEntry, Interaction
from veto.keys import UserKeys

_CHUNK = 500  # users per pipeline round trip
_TYPES = tuple(EventType)[:N_EVENT_TYPES]  # by code: a withdrawn decision (4) is not context


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
    client: Client,
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
                for key in (keys.history, keys.liked, keys.disliked):
                    pipe.delete(key)  # one key each: a cluster pipeline takes no multi-key DEL
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


def fetch_histories(
    client: Client, users: Sequence[str], *, partitions: int
) -> dict[str, list[str]]:
    """Raw history lists (newest first) of ``users``, in one round trip."""
    try:
        pipe = client.pipeline(transaction=False)
        for user in users:
            pipe.lrange(UserKeys(user, partitions).history, 0, -1)
        replies = pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot read histories: {exc}") from exc
    return {
        u: [r.decode() if isinstance(r, bytes) else r for r in reply]
        for u, reply in zip(users, replies, strict=True)
    }


def _decoded(user: str, raw: list[str], item_index: Mapping[str, int]) -> list[Interaction]:
    """A newest-first history list as interactions, oldest first: entries this trainer cannot
    read or whose item is not in the catalog are not context."""
    out: list[Interaction] = []
    for r in reversed(raw):
        # HistoryEntry.encode's format, parsed inline: a round decodes every entry of its
        # users' histories, and an enum call per entry costs more than the rest.
        code, _, rest = r.partition("|")
        item, _, ts = rest.partition("|")
        try:
            type_code, timestamp = int(code), float(ts)
        except ValueError:
            continue
        if 0 <= type_code < len(_TYPES) and item in item_index:
            out.append(Interaction(user, item, _TYPES[type_code], timestamp))
    return out


def round_interactions(
    events: Sequence[FeedbackEvent],
    histories: Mapping[str, list[str]],
    *,
    item_index: Mapping[str, int],
) -> tuple[list[Interaction], list[bool]]:
    """The round's users' histories as interactions (oldest first per user), and which of
    them are the round's ``events`` (the labels; items already checked against the catalog)."""
    by_user: dict[str, list[FeedbackEvent]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    interactions: list[Interaction] = []
    targets: list[bool] = []
    for user, own in by_user.items():
        seq = _decoded(user, histories.get(user, []), item_index)
        marked = [False] * len(seq)
        for e in own:
            x = Interaction(user, e.item_id, e.type, e.timestamp)
            found = next((i for i, y in enumerate(seq) if y == x and not marked[i]), None)
            if found is None:
                found = sum(1 for y in seq if y.timestamp < e.timestamp)
                seq.insert(found, x)
                marked.insert(found, False)
            marked[found] = True
        interactions += seq
        targets += marked
    return interactions, targets
