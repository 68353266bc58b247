"""Writing feedback the way the service does: stream entry + history + sets, per event."""

from __future__ import annotations

import itertools
import time

import redis

from veto.events import EventType, FeedbackEvent, HistoryEntry
from veto.keys import UserKeys

_ids = itertools.count()
PARTITIONS = 4
HISTORY_LEN = 8


def send(
    client: redis.Redis, user: str, item: str, kind: EventType, *, ts: float | None = None
) -> tuple[FeedbackEvent, str]:
    """XADD the event to the user's partition and update their history like the service."""
    now = time.time()
    event = FeedbackEvent(
        event_id=f"e{next(_ids)}",
        user_id=user,
        item_id=item,
        type=kind,
        timestamp=now if ts is None else ts,
        ingest_time=now,
    )
    keys = UserKeys(user, PARTITIONS)
    pipe = client.pipeline(transaction=True)
    pipe.xadd(keys.stream, event.to_fields())  # type: ignore[arg-type]
    pipe.lpush(keys.history, HistoryEntry(item, kind, event.timestamp).encode())
    pipe.ltrim(keys.history, 0, HISTORY_LEN - 1)
    if kind == EventType.LIKE:
        pipe.sadd(keys.liked, item)
    elif kind == EventType.DISLIKE:
        pipe.sadd(keys.disliked, item)
    stream_id = pipe.execute()[0]
    return event, stream_id if isinstance(stream_id, str) else stream_id.decode()
