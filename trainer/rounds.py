"""A round's training examples from streamed events and the users' Redis histories.

The input of an event is the user's history *before* it. The service writes the event's
history entry in the same transaction as the stream entry, so the trainer finds the entry
(same item, type and timestamp) in the user's list, newest first, and takes what follows it.
If it was already trimmed away, the entries older than the event's timestamp are used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import redis

from trainer.config import TrainConfig
from trainer.examples import Examples, history_window, is_label
from veto.errors import StoreUnavailable
from veto.events import EventType, FeedbackEvent, HistoryEntry
from veto.keys import UserKeys


def fetch_histories(
    client: redis.Redis, users: Sequence[str], *, partitions: int
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


def _prefix(event: FeedbackEvent, raw: list[str]) -> list[HistoryEntry]:
    """The entries older than ``event`` in a newest-first list."""
    own = HistoryEntry(event.item_id, event.type, event.timestamp).encode()
    try:
        start = raw.index(own) + 1
        older = raw[start:]
    except ValueError:
        older = [r for r in raw if HistoryEntry.decode(r).timestamp < event.timestamp]
    out: list[HistoryEntry] = []
    for r in older:
        try:
            out.append(HistoryEntry.decode(r))
        except ValueError:
            continue  # an entry this trainer cannot read is not context
    return out


def round_examples(
    events: Sequence[FeedbackEvent],
    histories: Mapping[str, list[str]],
    *,
    item_index: Mapping[str, int],
    user_index: Mapping[str, int],
    config: TrainConfig,
) -> Examples:
    """Examples of the labelled events (items already checked against the catalog)."""
    keep_dislikes = config.dislike_input or config.dislike_negatives
    rows: list[tuple[np.ndarray, np.ndarray, int, int, int]] = []
    for event in events:
        if not is_label(event.type, click_weight=config.click_weight):
            continue
        if event.type == EventType.DISLIKE and not config.uses_ntr:
            continue
        context = [
            h
            for h in _prefix(event, histories.get(event.user_id, []))
            if h.item_id in item_index and (keep_dislikes or h.type != EventType.DISLIKE)
        ][: config.history_len]
        items, types = history_window(
            [item_index[h.item_id] for h in context],
            [int(h.type) for h in context],
            history_len=config.history_len,
        )
        user = user_index.get(event.user_id, -1)
        rows.append((items, types, item_index[event.item_id], int(event.type), user))
    if not rows:
        return Examples.empty(config.history_len)
    return Examples(
        items=np.stack([r[0] for r in rows]),
        types=np.stack([r[1] for r in rows]),
        labels=np.array([r[2] for r in rows], np.int32),
        kinds=np.array([r[3] for r in rows], np.int8),
        users=np.array([r[4] for r in rows], np.int32),
    )
