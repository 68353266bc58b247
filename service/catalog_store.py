"""The service's Redis adapter for the catalog (``veto.items``): item writes in one
transaction, an item's record, the existence of a feedback batch's items, and the change log
the serving mirror replays. Every ``redis.RedisError`` leaves here as ``StoreUnavailable``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from veto import items, keys
from veto.connection import AsyncClient
from veto.errors import StoreUnavailable

# KEYS: withheld, then one record per item. ARGV: the items. Per item its catalog state:
# "deleted" / "hidden" (withheld), "live" (a record), or false (the catalog does not have it).
_STATES = """
local out = {}
for i, item in ipairs(ARGV) do
  local withheld = redis.call('HGET', KEYS[1], item)
  if withheld then
    out[i] = withheld
  elseif redis.call('EXISTS', KEYS[i + 1]) == 1 then
    out[i] = 'live'
  else
    out[i] = false
  end
end
return out
"""
# KEYS: generation, log. ARGV: the last entry applied ("0-0": none), the most entries to read.
# The generation, the oldest entry kept, and the entries after the last applied, atomically.
_CHANGES = """
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
return {redis.call('GET', KEYS[1]) or '0',
        oldest[1] and oldest[1][1] or false,
        redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}
"""
# KEYS: generation, log, withheld, categories. The whole serving state, atomically.
_SNAPSHOT = """
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
return {redis.call('GET', KEYS[1]) or '0',
        newest[1] and newest[1][1] or '0-0',
        redis.call('HGETALL', KEYS[3]),
        redis.call('HGETALL', KEYS[4])}
"""


@dataclass(frozen=True)
class ItemRecord:
    """An item as the catalog keeps it."""

    item_id: str
    category: str | None
    labels: list[str]
    hidden: bool


@dataclass(frozen=True)
class Change:
    """One log entry: an item's state after a write."""

    item_id: str
    state: str  # veto.items LIVE | HIDDEN | DELETED
    category: str | None


@dataclass(frozen=True)
class Changes:
    """The log after an entry: ``entries`` as (entry id, change), oldest first."""

    generation: int
    oldest: str | None  # the oldest entry the log still keeps
    entries: list[tuple[str, Change]] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """The catalog's whole serving state at ``generation``; ``last_id``: its newest entry."""

    generation: int
    last_id: str
    withheld: dict[str, str]
    categories: dict[str, str]


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class CatalogStore:
    """Reads and writes the catalog; one instance per process."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._write = client.register_script(items.WRITE_ITEMS)
        self._states = client.register_script(_STATES)
        self._changes = client.register_script(_CHANGES)
        self._snapshot = client.register_script(_SNAPSHOT)

    async def write(self, ops: Sequence[list[Any]]) -> int | None:
        """Apply ``ops`` (``veto.items.put`` / ``delete``) in one transaction: the new
        generation, or None when a delete named an item that does not exist (nothing written)."""
        script_keys, args = items.script_input(ops, now=time.time())
        try:
            generation, _ = await self._write(keys=script_keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot write the catalog: {exc}") from exc
        return None if int(generation) < 0 else int(generation)

    async def record(self, item_id: str) -> tuple[ItemRecord | None, str | None]:
        """The item's record (None without one) and its withheld state (None if served)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys.item(item_id))
                pipe.hget(keys.CATALOG_WITHHELD, item_id)
                raw, withheld = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read item {item_id[:40]!r}: {exc}") from exc
        if not raw:
            return None, withheld
        found = ItemRecord(
            item_id=item_id,
            category=raw.get("category"),
            labels=json.loads(raw.get("labels", "[]")),
            hidden=raw.get("hidden") == "1",
        )
        return found, withheld

    async def states(self, item_ids: Sequence[str]) -> dict[str, str | None]:
        """Each item's catalog state (``veto.items`` LIVE, HIDDEN, DELETED) or None when the
        catalog has no word on it: one round trip for a feedback batch's distinct items."""
        unique = list(dict.fromkeys(item_ids))
        script_keys = [keys.CATALOG_WITHHELD, *(keys.item(i) for i in unique)]
        try:
            found = await self._states(keys=script_keys, args=unique)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the catalog: {exc}") from exc
        return {item: state or None for item, state in zip(unique, found, strict=True)}

    async def generation(self) -> int:
        """The catalog generation (0 before any write)."""
        try:
            raw = await self.client.get(keys.CATALOG_GENERATION)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the catalog generation: {exc}") from exc
        return int(raw or 0)

    async def changes(self, after: str, *, limit: int) -> Changes:
        """The generation and at most ``limit`` log entries after entry ``after``."""
        try:
            generation, oldest, entries = await self._changes(
                keys=[keys.CATALOG_GENERATION, keys.CATALOG_LOG], args=[after, limit]
            )
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the catalog log: {exc}") from exc
        return Changes(
            generation=int(generation),
            oldest=oldest or None,
            entries=[(entry_id, _change(_pairs(flat))) for entry_id, flat in entries],
        )

    async def snapshot(self) -> Snapshot:
        """The whole serving state (withheld items, categories), atomically."""
        script_keys = [
            keys.CATALOG_GENERATION,
            keys.CATALOG_LOG,
            keys.CATALOG_WITHHELD,
            keys.CATALOG_CATEGORIES,
        ]
        try:
            generation, last_id, withheld, categories = await self._snapshot(keys=script_keys)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the catalog: {exc}") from exc
        return Snapshot(int(generation), last_id, _pairs(withheld), _pairs(categories))


def _change(fields: dict[str, str]) -> Change:
    return Change(
        item_id=fields["item"], state=fields["state"], category=fields.get("category") or None
    )
