"""The catalog in Redis: what items exist, their metadata, and which must never be served.
Written by the service's item API and by ``veto bootstrap`` (seeding), with the one script
here, so both keep the same records, indexes and change log (keys: ``veto.keys``).

Which items exist (the rule the service applies everywhere):

    an item exists  <=>  the catalog has a record of it
                         or (the served model version has it and the catalog has not deleted it)

so a deployment whose catalog is empty (bootstrapped before the catalog existed) serves and
accepts feedback on its model's items as before, and a catalog that is seeded or filled
through the API takes over item by item. Deleting an item leaves a tombstone
(``withheld[item] = "deleted"``) rather than nothing: the model versions still carry its
vector, and the tombstone is what keeps it out of every answer and out of feedback. A PUT
brings a deleted item back. Hidden items exist (feedback on them is accepted) but are never
served.

Every write, whole batch or single item, is one Lua transaction that also bumps the catalog
generation and appends one log entry per item written: a serving process reads the
generation with each batch's user state and, when it moved, replays the log since the last
entry it applied (``service.catalog_mirror``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from veto import keys
from veto.connection import Client
from veto.errors import StoreUnavailable

LIVE, HIDDEN, DELETED = "live", "hidden", "deleted"
# Log entries kept (approximately): a process further behind than this reloads the whole
# catalog state instead of replaying (one HGETALL of the two indexes).
LOG_LENGTH = 100_000

# KEYS: generation, log, withheld, categories, then the records the batch writes (each once).
# ARGV: log length, now, then the operations as one JSON array of [op, record position, item,
# fields]. "put" fields hold only what the client gave: category (a string, or null to clear
# it), labels (a JSON array, already encoded), hidden (bool). "del" fields: known (the served
# model has the item). Deletes are checked before anything is written: {-1, i} names the
# first unknown item and the batch writes nothing; else {generation, operations}.
WRITE_ITEMS = """
local gen_key, log, withheld, categories = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ops = cjson.decode(ARGV[3])
for i, op in ipairs(ops) do
  if op[1] == 'del' and redis.call('EXISTS', KEYS[op[2]]) == 0 then
    if not op[4].known or redis.call('HGET', withheld, op[3]) == 'deleted' then
      return {-1, i}
    end
  end
end
local gen = redis.call('INCR', gen_key)
for _, op in ipairs(ops) do
  local rec, item, f = KEYS[op[2]], op[3], op[4]
  local state, category = 'deleted', ''
  if op[1] == 'del' then
    redis.call('DEL', rec)
    redis.call('HDEL', categories, item)
    redis.call('HSET', withheld, item, 'deleted')
  else
    if f.category == cjson.null then
      redis.call('HDEL', rec, 'category')
    elseif f.category ~= nil then
      redis.call('HSET', rec, 'category', f.category)
    end
    if f.labels ~= nil then redis.call('HSET', rec, 'labels', f.labels) end
    if f.hidden ~= nil then redis.call('HSET', rec, 'hidden', f.hidden and '1' or '0') end
    redis.call('HSETNX', rec, 'labels', '[]')
    redis.call('HSETNX', rec, 'hidden', '0')
    redis.call('HSET', rec, 'updated_at', ARGV[2])
    category = redis.call('HGET', rec, 'category')
    if category then
      redis.call('HSET', categories, item, category)
    else
      category = ''
      redis.call('HDEL', categories, item)
    end
    if redis.call('HGET', rec, 'hidden') == '1' then
      state = 'hidden'
      redis.call('HSET', withheld, item, 'hidden')
    else
      state = 'live'
      redis.call('HDEL', withheld, item)
    end
  end
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[1], '*',
             'item', item, 'state', state, 'category', category, 'gen', gen)
end
return {gen, #ops}
"""


def put(item_id: str, fields: Mapping[str, Any]) -> list[Any]:
    """A create-or-update of ``item_id`` (a valid id) with the given ``fields`` only (category:
    str | None, labels: list[str], hidden: bool); fields left out keep their value."""
    given = dict(fields)
    if "labels" in given:
        given["labels"] = json.dumps(list(given["labels"]))
    return ["put", item_id, given]


def delete(item_id: str, *, known: bool) -> list[Any]:
    """A withdrawal of ``item_id``; ``known``: the served model version has it."""
    return ["del", item_id, {"known": known}]


def script_input(ops: Sequence[list[Any]], *, now: float) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``WRITE_ITEMS`` for ``ops`` (from ``put`` / ``delete``)."""
    positions = {
        keys.CATALOG_GENERATION: 1,
        keys.CATALOG_LOG: 2,
        keys.CATALOG_WITHHELD: 3,
        keys.CATALOG_CATEGORIES: 4,
    }
    packed = []
    for kind, item_id, fields in ops:
        at = positions.setdefault(keys.item(item_id), len(positions) + 1)
        packed.append([kind, at, item_id, fields])
    return list(positions), [LOG_LENGTH, repr(now), json.dumps(packed)]


def seed(
    client: Client,
    items: Iterable[tuple[str, str | None]],
    *,
    chunk: int = 10_000,
) -> int:
    """Put every (item, category) into the catalog, ``chunk`` items per transaction (a
    transaction blocks Redis while it runs); hidden flags and labels already there are kept.
    Returns how many items were written. For ``veto bootstrap``."""
    script = client.register_script(WRITE_ITEMS)
    written = 0
    batch: list[list[Any]] = []

    def flush() -> None:
        nonlocal written
        if batch:
            script_keys, args = script_input(batch, now=time.time())
            script(keys=script_keys, args=args)
            written += len(batch)
            batch.clear()

    try:
        for item_id, category in items:
            batch.append(put(item_id, {} if category is None else {"category": category}))
            if len(batch) >= chunk:
                flush()
        flush()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot seed the catalog: {exc}") from exc
    return written


def exists(state: str | None, *, in_model: bool) -> bool:
    """The module's rule: ``state`` is the catalog's word on the item (LIVE, HIDDEN, DELETED;
    None when it has no record), ``in_model`` whether the served version has the item."""
    return state != DELETED and (state is not None or in_model)


# -- reading the catalog (the trainer: which items exist, with which category) -------------


class CatalogView:
    """Every item the catalog has a word on: its state (LIVE, HIDDEN, DELETED) and category,
    kept up to date by ``refresh`` (the log after the last entry applied, or a whole read).

    The trainer's copy; the service keeps its own (``service.catalog_mirror``), which does
    not need the items without a category that are neither hidden nor deleted."""

    def __init__(self) -> None:
        self.generation = -1  # -1: never read
        self.last_id = "0-0"
        self.states: dict[str, str] = {}
        self.categories: dict[str, str] = {}

    def refresh(self, client: Client, *, replay_limit: int = 10_000) -> bool:
        """Catch up with the catalog; True when the generation moved (StoreUnavailable on a
        Redis error, the view unchanged)."""
        try:
            generation = int(client.get(keys.CATALOG_GENERATION) or 0)
            if generation == self.generation:
                return False
            if self.generation >= 0 and generation > self.generation:
                found = _log_after(client, self.last_id, replay_limit + 1)
                if found is not None and len(found[1]) <= replay_limit:
                    self._replay(*found)
                    return True
            self._load(client)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot read the catalog: {exc}") from exc
        return True

    def _replay(self, generation: int, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            flat = {_text(k): _text(v) for k, v in fields.items()}
            item, category = flat["item"], flat.get("category") or None
            self.states[item] = flat["state"]
            if category is None:
                self.categories.pop(item, None)
            else:
                self.categories[item] = category
            self.last_id = _text(entry_id)
        self.generation = generation

    def _load(self, client: Client) -> None:
        """The whole state: the indexes and the log's newest entry in one transaction, then
        the records by SCAN (not atomic with it: a write in between is in the log after
        ``last_id`` and is replayed on the next refresh, which is idempotent)."""
        pipe = client.pipeline(transaction=True)
        pipe.get(keys.CATALOG_GENERATION)
        pipe.xrevrange(keys.CATALOG_LOG, "+", "-", count=1)
        pipe.hgetall(keys.CATALOG_WITHHELD)
        pipe.hgetall(keys.CATALOG_CATEGORIES)
        generation, newest, withheld, categories = pipe.execute()
        prefix = keys.item("")
        states = {
            _text(k)[len(prefix) :]: LIVE
            for k in client.scan_iter(match=f"{prefix}*", count=10_000)
        }
        for item, state in withheld.items():
            states[_text(item)] = _text(state)
        self.states = states
        self.categories = {_text(k): _text(v) for k, v in categories.items()}
        self.last_id = _text(newest[0][0]) if newest else "0-0"
        self.generation = int(generation or 0)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _log_after(client: Client, after: str, count: int) -> tuple[int, list[Any]] | None:
    """The generation and up to ``count`` log entries after ``after``, in one transaction;
    None when the log was trimmed past ``after`` (entries may be lost)."""
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.CATALOG_GENERATION)
    pipe.xrange(keys.CATALOG_LOG, "-", "+", count=1)
    pipe.xrange(keys.CATALOG_LOG, f"({after}", "+", count=count)
    generation, oldest, entries = pipe.execute()
    first = _text(oldest[0][0]) if oldest else None
    if first is not None and after != "0-0" and _entry_key(first) > _entry_key(after):
        return None
    return int(generation or 0), entries


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
