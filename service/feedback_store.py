"""The service's Redis adapter: a user's state for ranking, atomic feedback batches, the
popular-items counters. Every ``redis.RedisError`` leaves here as ``StoreUnavailable``."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError, NoScriptError, RedisError
from redis.typing import EncodableT

from veto import keys
from veto.connection import AsyncClient, connect_async, is_cluster
from veto.errors import StoreUnavailable
from veto.events import EventType, FeedbackEvent, encode_entry
from veto.redis_url import cluster_address

# KEYS: every key the batch touches, each once (declared, so a cluster can route and check
# the script). ARGV: dedupe TTL, history length, popular-counter TTL, then the events as one
# JSON array of [kind, item, history entry, [key positions: dedupe, stream, history, liked,
# disliked, popular, decided, events], [stream field, value, ...], timestamp (repr), event id].
# One argument instead of ~20 per event: packing the command's arguments took three quarters
# of the client's CPU for a batch of 100. Validation happened before: the script only fails
# on Redis-level errors.
#
# Decisions (like, dislike, withdraw) set an item's place in the liked / disliked sets by
# timestamp, not by arrival: ``decided`` keeps per item "<ts>|<code>|<withdrawn>", its latest
# decision and its latest withdraw's timestamp, and an older decision changes no set (equal
# timestamps: the later arrival wins). Every event is still logged and, but a withdraw,
# enters the history. A withdraw at t rewrites the item's like and dislike entries at or
# before t as withdrawn (code 4, skipped by every encoder input), whether or not a newer
# decision followed it, and a like or dislike older than the item's latest withdraw enters
# the history already withdrawn: the same rule the trainer applies to its labels.
_WRITE_BATCH = """
local ttl = tonumber(ARGV[1])
local hlen = tonumber(ARGV[2])
local pop_ttl = tonumber(ARGV[3])
local events = cjson.decode(ARGV[4])
local codes = {like = '0', dislike = '1', withdraw = '4'}
local flags = {}
local accepted, duplicates = 0, 0

local function withdraw_entries(hist, item, ts)
  for i, e in ipairs(redis.call('LRANGE', hist, 0, -1)) do
    local code, it, ets = string.match(e, '^(%d+)|([^|]*)|(.*)$')
    if it == item and (code == '0' or code == '1') and tonumber(ets) <= ts then
      redis.call('LSET', hist, i - 1, '4|' .. it .. '|' .. ets)
    end
  end
end

for i, ev in ipairs(events) do
  local kind, item, entry, at = ev[1], ev[2], ev[3], ev[4]
  local ts_text, event_id = ev[6], ev[7]
  local ts = tonumber(ts_text)
  local dedupe, stream, hist = KEYS[at[1]], KEYS[at[2]], KEYS[at[3]]
  local liked, disliked, popular = KEYS[at[4]], KEYS[at[5]], KEYS[at[6]]
  local decided, index = KEYS[at[7]], KEYS[at[8]]
  if redis.call('SET', dedupe, '1', 'NX', 'EX', ttl) then
    local id = redis.call('XADD', stream, '*', unpack(ev[5]))
    redis.call('HSET', index, event_id, id)
    local last = redis.call('HGET', decided, item)
    local last_ts, last_code, withdrawn = nil, '', ''
    if last then
      local t, c, w = string.match(last, '^([^|]+)|(%d+)|(.*)$')
      last_ts, last_code, withdrawn = tonumber(t), c, w
    end
    local code = codes[kind]
    if code then
      local applied = last_ts == nil or last_ts <= ts
      if kind == 'withdraw' then
        if withdrawn == '' or tonumber(withdrawn) < ts then withdrawn = ts_text end
        withdraw_entries(hist, item, ts)
      end
      if applied then
        last_ts, last_code = ts, code
        if kind == 'like' then
          redis.call('SADD', liked, item)
          redis.call('SREM', disliked, item)
          redis.call('ZINCRBY', popular, 1, item)
          redis.call('EXPIRE', popular, pop_ttl)
        elseif kind == 'dislike' then
          redis.call('SADD', disliked, item)
          redis.call('SREM', liked, item)
        else
          redis.call('SREM', liked, item)
          redis.call('SREM', disliked, item)
        end
      end
      redis.call('HSET', decided, item,
                 (applied and ts_text or string.match(last, '^[^|]+')) .. '|' .. last_code
                 .. '|' .. withdrawn)
    end
    if kind ~= 'withdraw' then
      if code and withdrawn ~= '' and tonumber(withdrawn) > ts then
        entry = '4|' .. item .. '|' .. ts_text
      end
      redis.call('LPUSH', hist, entry)
      redis.call('LTRIM', hist, 0, hlen - 1)
    end
    accepted = accepted + 1
    flags[i] = 1
  else
    duplicates = duplicates + 1
    flags[i] = 0
  end
end
return {accepted, duplicates, flags}
"""
# KEYS history, disliked, liked; ARGV history length. One command per user rather than three:
# less client-side work to pack and parse in a batch's pipeline.
_READ_USER = """
return {redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1),
        redis.call('SMEMBERS', KEYS[2]),
        redis.call('SMEMBERS', KEYS[3])}
"""
_POPULAR_PER_KEY = 1000


@dataclass(frozen=True)
class UserState:
    """What ranking needs about one user, read in one round trip."""

    # Newest first, as Redis keeps it (HistoryEntry.encode() strings): decoded once, straight
    # into the encoder's input, by service.retrieval.history_rows.
    history: Sequence[str] = ()
    disliked: frozenset[str] = field(default_factory=frozenset)
    liked: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class WriteResult:
    accepted: int
    duplicates: int
    accepted_by_type: dict[EventType, int]
    new_events: tuple[FeedbackEvent, ...] = ()  # the accepted ones, in batch order


class PartlyWritten(StoreUnavailable):
    """A cluster write of which some partitions were stored and some failed."""

    def __init__(self, message: str, *, written: WriteResult) -> None:
        super().__init__(message)
        self.written = written


def day_of(ts: float) -> str:
    """The UTC day (yyyymmdd) of a server timestamp: the popular-counter bucket."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d")


def connect(url: str, *, timeout: float) -> AsyncClient:
    """An async client (one Redis or a cluster, ``veto.connection``) with short timeouts and
    one immediate retry, so a restarted Redis is picked up on the next call and a dead one
    fails fast; commands packed by hiredis."""
    # On a cluster a retry closes every connection to every master and waits 250 ms
    # (redis-py's cluster pipeline): none, the caller degrades or answers 503 at once.
    retries = 0 if cluster_address(url) else 1
    client = connect_async(url, timeout=timeout, retry=Retry(NoBackoff(), retries))
    if isinstance(client, aioredis.RedisCluster):
        # Every node's connections, those of nodes found later included, are made from
        # connection_kwargs; the startup nodes were made already.
        packed = _hiredis_packed(client.connection_kwargs["connection_class"])
        client.connection_kwargs["connection_class"] = packed
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = packed
    else:
        pool = client.connection_pool
        pool.connection_class = _hiredis_packed(pool.connection_class)
    return client


class _HiredisPacking(AbstractConnection):
    """Packs commands with hiredis (C), as redis-py's synchronous client already does: the
    asyncio client packs in Python, re-joining its buffer once per argument, which was most
    of the service's CPU for a feedback batch and a share of every pipelined read."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        # A command name of several words ("SCRIPT LOAD") goes as separate arguments.
        head = args[0].encode() if isinstance(args[0], str) else args[0]
        words = head.split() if isinstance(head, bytes) else [head]
        rest = (bytes(a) if isinstance(a, bytearray) else a for a in args[1:])
        flat: tuple[Any, ...] = (*words, *rest)
        try:
            return [hiredis.pack_command(flat)]
        except TypeError as exc:  # None, a bool, ...: what redis-py's own encoder refuses
            raise DataError(f"cannot send {args[1:]!r} to Redis: {exc}") from exc


_C = TypeVar("_C", bound=AbstractConnection)


def _hiredis_packed(base: type[_C]) -> type[_C]:
    """``base`` (TCP, TLS or Unix socket, as the URL chose) with hiredis packing."""
    return type(f"HiredisPacked{base.__name__}", (_HiredisPacking, base), {})


class FeedbackStore:
    """Reads and writes one user's feedback state; one instance per process."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        partitions: int,
        history_len: int,
        dedupe_ttl_seconds: int,
    ) -> None:
        self.client = client
        self.partitions = partitions
        self.history_len = history_len
        self.dedupe_ttl_seconds = dedupe_ttl_seconds
        self._script = client.register_script(_WRITE_BATCH)
        self._read = client.register_script(_READ_USER)

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def read_user(self, user_id: str) -> UserState:
        """History (newest first), disliked and liked items of a user, one round trip."""
        states = await self.read_users([user_id])
        return states[0]

    async def read_users(self, user_ids: Sequence[str]) -> list[UserState]:
        """``read_user`` for each of ``user_ids``, in order, all in one round trip: a pipeline
        of the read script, one call per user (a user's keys share a slot, the users' need
        not, so one script over every user would not run on a cluster). StoreUnavailable if
        any of them cannot be read."""
        _, states = await self._read_states(user_ids, generation=False)
        if any(state is None for state in states):
            raise StoreUnavailable("cannot read user state: a Redis Cluster master is down")
        return [state for state in states if state is not None]

    async def read_batch(
        self, user_ids: Sequence[str]
    ) -> tuple[int | None, list[UserState | None]]:
        """The catalog generation (``veto.items``) and ``read_users``, in the same round
        trip: what lets a recommendation batch notice a catalog write for one GET more.
        On a cluster with a master down, the users (and the generation) of its slots are
        None and the others are read: the caller degrades only those."""
        return await self._read_states(user_ids, generation=True)

    async def _read_states(
        self, user_ids: Sequence[str], *, generation: bool
    ) -> tuple[int | None, list[UserState | None]]:
        commands: list[tuple[Any, ...]] = [("GET", keys.CATALOG_GENERATION)] if generation else []
        for user_id in user_ids:
            uk = keys.UserKeys(user_id, self.partitions)
            commands.append((3, uk.history, uk.disliked, uk.liked, self.history_len))
        try:
            replies = await self._run(commands, script=(_READ_USER, self._read.sha))
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read user state: {exc}") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed and len(failed) == len(replies):
            raise StoreUnavailable(f"cannot read user state: {failed[0]}")
        head: Any = replies[0] if generation else 0
        gen = None if isinstance(head, Exception) else int(head or 0)
        states: list[UserState | None] = [
            None
            if isinstance(reply, Exception)
            else UserState(
                history=reply[0], disliked=frozenset(reply[1]), liked=frozenset(reply[2])
            )
            for reply in replies[1 if generation else 0 :]
        ]
        return gen, states

    async def _run(
        self, commands: Sequence[tuple[Any, ...]], *, script: tuple[str, str]
    ) -> list[Any]:
        """``commands`` in one pipeline, each reply or error in order. A command that is a
        tuple starting with an int is ``script`` (source, sha) called with those numkeys,
        keys and args. Errors per command: on a cluster, one master down fails only its
        slots' commands; when the pipeline fails as a whole there (redis-py raises for a
        master it cannot connect to), each command goes on its own."""
        source, sha = script

        def command(c: tuple[Any, ...], *, by_sha: bool = True) -> tuple[Any, ...]:
            if not isinstance(c[0], int):
                return c
            # EVALSHA through execute_command: redis-py refuses pipe.evalsha on a cluster
            # pipeline, though a script whose keys share a slot routes like any command.
            return ("EVALSHA", sha, *c) if by_sha else ("EVAL", source, *c)

        replies = await self._send([command(c) for c in commands])
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # A master lost its script cache (restarted, SCRIPT FLUSH). EVAL sends the script
            # (and caches it there): SCRIPT LOAD goes to every master and fails while one is
            # down.
            again = await self._send([command(commands[i], by_sha=False) for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for c in commands:
                    pipe.execute_command(*c)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies
        except RedisError:
            if not is_cluster(self.client):
                raise
        each = await asyncio.gather(
            *(self.client.execute_command(*c) for c in commands), return_exceptions=True
        )
        return list(each)

    async def write_batch(self, events: Sequence[FeedbackEvent]) -> WriteResult:
        """Write a validated batch; duplicates by event id are skipped. Returns how many were
        new and how many were duplicates.

        One Redis: the whole batch is one Lua script, all or nothing. A cluster: one script
        per user partition (a slot), all sent in one pipeline; each partition's events are
        written all or nothing. When a partition fails (its master down) after others were
        written, ``PartlyWritten`` (a StoreUnavailable: 503) says how many were stored; the
        client's retry of the same batch finds those by their event ids and counts them as
        duplicates, so nothing is lost or counted twice."""
        if not is_cluster(self.client):
            groups = [list(range(len(events)))]
        else:
            by_partition: dict[int, list[int]] = {}
            for i, ev in enumerate(events):
                part = keys.partition_of(ev.user_id, self.partitions)
                by_partition.setdefault(part, []).append(i)
            groups = list(by_partition.values())
        calls = [self._pack([events[i] for i in group]) for group in groups]
        try:
            replies = await self._run(
                [(len(k), *k, *a) for k, a in calls], script=(_WRITE_BATCH, self._script.sha)
            )
        except RedisError as exc:
            raise StoreUnavailable(f"cannot write feedback: {exc}") from exc
        if len(groups) == 1 and isinstance(replies[0], Exception):
            raise StoreUnavailable(f"cannot write feedback: {replies[0]}")
        flags = [0] * len(events)
        accepted = duplicates = 0
        failed: list[Exception] = []
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, Exception):
                failed.append(reply)
                continue
            accepted += int(reply[0])
            duplicates += int(reply[1])
            for i, flag in zip(group, reply[2], strict=True):
                flags[i] = int(flag)
        new = tuple(ev for ev, flag in zip(events, flags, strict=True) if flag)
        result = WriteResult(accepted, duplicates, dict(Counter(ev.type for ev in new)), new)
        if failed:
            stored = accepted + duplicates
            raise PartlyWritten(
                f"cannot write feedback: {failed[0]}; {stored} of {len(events)} events are "
                "stored (retry the batch with the same event ids: those count as duplicates)",
                written=result,
            )
        return result

    def _pack(self, events: Sequence[FeedbackEvent]) -> tuple[list[str], list[str | int]]:
        """The write script's KEYS and ARGV for ``events``."""
        positions: dict[str, int] = {}  # key -> its 1-based position in KEYS

        def at(key: str) -> int:
            return positions.setdefault(key, len(positions) + 1)

        days: dict[float, str] = {}  # a batch shares one ingest time: format the day once
        packed: list[list[Any]] = []
        for ev in events:
            uk = keys.UserKeys(ev.user_id, self.partitions)
            day = days.get(ev.ingest_time) or days.setdefault(
                ev.ingest_time, day_of(ev.ingest_time)
            )
            where = [
                at(uk.dedupe(ev.event_id)),
                at(uk.stream),
                at(uk.history),
                at(uk.liked),
                at(uk.disliked),
                at(keys.popular(uk.partition, day)),
                at(uk.decided),
                at(uk.events),
            ]
            entry = encode_entry(ev.item_id, ev.type, ev.timestamp)
            fields = [x for pair in ev.to_fields().items() for x in pair]
            packed.append(
                [ev.type.label, ev.item_id, entry, where, fields, repr(ev.timestamp), ev.event_id]
            )
        args: list[str | int] = [
            self.dedupe_ttl_seconds,
            self.history_len,
            8 * 86_400,
            json.dumps(packed),
        ]
        return list(positions), args

    async def popular(self, *, days: int, now: float | None = None) -> list[tuple[str, float]]:
        """Likes per item over the last ``days`` UTC days summed across partitions, most
        liked first (each counter contributes its top items only)."""
        now = time.time() if now is None else now
        today = datetime.fromtimestamp(now, UTC)
        day_names = [(today - timedelta(days=d)).strftime("%Y%m%d") for d in range(days)]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for p in range(self.partitions):
                    for day in day_names:
                        pipe.zrevrange(
                            keys.popular(p, day), 0, _POPULAR_PER_KEY - 1, withscores=True
                        )
                results = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read popular items: {exc}") from exc
        totals: dict[str, float] = {}
        for rows in results:
            for item, score in rows:
                totals[item] = totals.get(item, 0.0) + float(score)
        return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))

    async def close(self) -> None:
        await self.client.aclose()
