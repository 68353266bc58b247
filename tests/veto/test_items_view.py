"""``veto.items.CatalogView`` against a real Redis: a view kept up to date from the log ends
in the same state as a whole read, for creates, category changes and clears, hides and
deletes; it reloads when the log was trimmed past it or Redis lost its data."""

from __future__ import annotations

import time
from typing import Any

import redis

from veto import items, keys


def _write(client: redis.Redis, ops: list[list[Any]]) -> None:
    script_keys, args = items.script_input(ops, now=time.time())
    client.register_script(items.WRITE_ITEMS)(keys=script_keys, args=args)


def _fresh(client: redis.Redis) -> items.CatalogView:
    view = items.CatalogView()
    view.refresh(client)
    return view


def test_a_view_caught_up_from_the_log_equals_a_whole_read(redis_client: redis.Redis) -> None:
    items.seed(redis_client, [("a", "c1"), ("b", "c2"), ("c", None)])
    view = _fresh(redis_client)
    assert view.states == {"a": items.LIVE, "b": items.LIVE, "c": items.LIVE}
    assert view.categories == {"a": "c1", "b": "c2"}
    assert not view.refresh(redis_client)  # nothing written: nothing to do
    _write(redis_client, [items.put("d", {"category": "c9"}), items.put("a", {"category": None})])
    _write(redis_client, [items.put("b", {"hidden": True}), items.delete("c", known=False)])
    _write(redis_client, [items.put("e", {})])
    assert view.refresh(redis_client)
    expected = {"a": items.LIVE, "b": items.HIDDEN, "c": items.DELETED, "d": items.LIVE}
    assert view.states == {**expected, "e": items.LIVE}
    assert view.categories == {"b": "c2", "d": "c9"}
    whole = _fresh(redis_client)
    assert (whole.states, whole.categories) == (view.states, view.categories)
    assert whole.generation == view.generation


def test_a_view_reloads_when_the_log_was_trimmed_or_redis_lost_its_data(
    redis_client: redis.Redis,
) -> None:
    items.seed(redis_client, [("a", "c1")])
    view = _fresh(redis_client)
    _write(redis_client, [items.put("b", {"category": "c2"})])
    _write(redis_client, [items.put("x", {})])
    redis_client.xtrim(keys.CATALOG_LOG, maxlen=1)  # b's entry is gone
    assert view.refresh(redis_client)
    assert view.states == {"a": items.LIVE, "b": items.LIVE, "x": items.LIVE}
    assert view.categories == {"a": "c1", "b": "c2"}
    redis_client.flushall()
    items.seed(redis_client, [("z", "c3")])  # generation 1 again, below the view's
    assert view.refresh(redis_client)
    assert view.states == {"z": items.LIVE} and view.categories == {"z": "c3"}
