"""What the trainer must forget: users erased through the API (``veto.keys.erased``, one set
per partition, written by the service's erasure in the user's own transaction) and withdrawn
decisions (each user's ``decided`` hash, ``service.feedback_store``).

An erased user's events read before the erasure are not trained on, their replay examples and
per-user row are dropped, and the erasure record is removed only after a version without them
is published (``clear``), so a crash in between purges again. A like or dislike is not
trained on when the user withdrew it at or after its timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from veto import keys
from veto.connection import Client
from veto.errors import StoreUnavailable
from veto.events import EventType, FeedbackEvent

# KEYS: one erased set; ARGV: user, score, ... Removes a user only if it was not erased again
# since it was read (a newer score): that later erasure is purged by the next round.
_CLEAR = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


def read_erased(client: Client, *, partitions: int) -> dict[str, float]:
    """Erased users not yet purged, with their (latest) erasure time (service clock, s)."""
    try:
        pipe = client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.zrange(keys.erased(p), 0, -1, withscores=True)
        replies = pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot read erasures: {exc}") from exc
    out: dict[str, float] = {}
    for reply in replies:
        for user, score in reply:
            out[user.decode() if isinstance(user, bytes) else str(user)] = float(score)
    return out


def clear(client: Client, erased: Mapping[str, float], *, partitions: int) -> None:
    """Remove the purged erasures (after a version without them is published)."""
    by_partition: dict[int, list[str]] = {}
    for user, at in erased.items():
        by_partition.setdefault(keys.partition_of(user, partitions), []).extend([user, repr(at)])
    try:
        script = client.register_script(_CLEAR)
        for partition, args in by_partition.items():
            script(keys=[keys.erased(partition)], args=args)
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot clear erasures: {exc}") from exc


def read_withdrawn(
    client: Client, users: Sequence[str], *, partitions: int
) -> dict[tuple[str, str], float]:
    """(user, item) -> the user's latest withdraw of the item, for ``users``."""
    try:
        pipe = client.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(keys.UserKeys(user, partitions).decided)
        replies = pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot read decisions: {exc}") from exc
    out: dict[tuple[str, str], float] = {}
    for user, decided in zip(users, replies, strict=True):
        for item, value in decided.items():
            text = value.decode() if isinstance(value, bytes) else str(value)
            withdrawn = text.rsplit("|", 1)[-1]  # "<ts>|<code>|<withdrawn ts or empty>"
            if withdrawn:
                name = item.decode() if isinstance(item, bytes) else str(item)
                out[(user, name)] = float(withdrawn)
    return out


def is_withdrawn(event: FeedbackEvent, withdrawn: Mapping[tuple[str, str], float]) -> bool:
    """Whether a like or dislike was withdrawn at or after it happened."""
    if event.type not in (EventType.LIKE, EventType.DISLIKE):
        return False
    at = withdrawn.get((event.user_id, event.item_id))
    return at is not None and at >= event.timestamp
