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
    client: redis.Redis,
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
