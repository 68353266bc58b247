"""The service's Redis adapter for one user's own data: erasure in one transaction, and the
state an access request reads (history, liked and disliked sets) in one consistent read.
Every ``redis.RedisError`` leaves here as ``StoreUnavailable``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from veto import keys
from veto.connection import AsyncClient
from veto.errors import StoreUnavailable

# KEYS: history, liked, disliked, decided, events (the index event id -> stream id), the
# partition's stream, the partition's erased set, then the dedupe marker of every event of
# the index (declared, so a cluster can check the script: all in the user's slot).
# ARGV: user, now (seconds), the trainer's consumer group.
# Refuses ({-1}) when the index no longer holds exactly the events whose markers were passed
# (a write landed between reading it and this script): the caller reads it again. Then
# deletes the markers, the stream entries of the index, and, for entries written before the
# index existed, the user's entries the trainer has not trained on yet (pending or never
# delivered: from the oldest pending entry, or after the last delivered one, to the end; the
# whole stream when the group does not exist yet), then the user's keys, and records the
# erasure for the trainer (``veto.keys.erased``). Returns {keys deleted, stream entries
# deleted, dedupe markers deleted}.
_ERASE = """
local user, now, group = ARGV[1], ARGV[2], ARGV[3]
local index, stream, erased = KEYS[5], KEYS[6], KEYS[7]
if redis.call('HLEN', index) ~= #KEYS - 7 then return {-1, 0, 0} end
local entries, markers = 0, 0
for i = 8, #KEYS do markers = markers + redis.call('DEL', KEYS[i]) end
for _, id in ipairs(redis.call('HVALS', index)) do
  entries = entries + redis.call('XDEL', stream, id)
end
if redis.call('EXISTS', stream) == 1 then
  local start = '-'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    if info['name'] == group then
      local pending = redis.call('XPENDING', stream, group)
      if pending[1] > 0 then start = pending[2] else start = '(' .. info['last-delivered-id'] end
    end
  end
  for _, e in ipairs(redis.call('XRANGE', stream, start, '+')) do
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'user_id' then
        if f[j + 1] == user then entries = entries + redis.call('XDEL', stream, e[1]) end
        break
      end
    end
  end
end
local held = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZADD', erased, now, user)
return {held, entries, markers}
"""
# A write racing the erasure makes the script refuse; this many reads of the index at most.
_ATTEMPTS = 5


@dataclass(frozen=True)
class Erasure:
    """What one erasure deleted (all 0 for a user Veto held nothing of)."""

    keys: int
    stream_entries: int
    dedupe_markers: int


@dataclass(frozen=True)
class HeldState:
    """Everything Redis holds of one user's own, read at one instant: the history as Redis
    keeps it (``HistoryEntry.encode()`` strings, newest first) and the sets, sorted."""

    history: list[str]
    liked: list[str]
    disliked: list[str]


class UserStore:
    """Erases and reads one user's data; one instance per process."""

    def __init__(self, client: AsyncClient, *, partitions: int) -> None:
        self.client = client
        self.partitions = partitions
        self._erase = client.register_script(_ERASE)

    async def erase(self, user_id: str, *, now: float | None = None) -> Erasure:
        """Delete everything of ``user_id`` in one transaction (``_ERASE``); idempotent."""
        uk = keys.UserKeys(user_id, self.partitions)
        fixed = [*uk.state(), uk.stream, uk.erased]
        args = [user_id, repr(time.time() if now is None else now), keys.CONSUMER_GROUP]
        try:
            for _ in range(_ATTEMPTS):
                event_ids = await self.client.hkeys(uk.events)  # str: decode_responses
                markers = [uk.dedupe(str(event_id)) for event_id in event_ids]
                held, entries, deleted = await self._erase(keys=[*fixed, *markers], args=args)
                if int(held) >= 0:
                    return Erasure(int(held), int(entries), int(deleted))
        except RedisError as exc:
            raise StoreUnavailable(f"cannot erase user {user_id[:40]!r}: {exc}") from exc
        raise StoreUnavailable(f"user {user_id[:40]!r} kept writing during {_ATTEMPTS} erasures")

    async def held(self, user_id: str) -> HeldState:
        """The user's history and sets, in one MULTI (their keys share a slot)."""
        uk = keys.UserKeys(user_id, self.partitions)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lrange(uk.history, 0, -1)
                pipe.smembers(uk.liked)
                pipe.smembers(uk.disliked)
                history, liked, disliked = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read user {user_id[:40]!r}: {exc}") from exc
        return HeldState(list(history), sorted(liked), sorted(disliked))
