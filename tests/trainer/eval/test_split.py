"""trainer.eval.split: per-user random, temporal and provided splits."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.data.synthetic import make_world
from trainer.eval.split import held_out_count, provided_split, random_split, temporal_split
from veto.errors import ConfigError, InvalidInput
from veto.events import EventType, Interaction


def _events() -> list[Interaction]:
    world = make_world(n_items=100, n_users=30, n_categories=5, dim=8, events_per_user=17, seed=3)
    return world.interactions


def _key(x: Interaction) -> tuple[str, str, float]:
    return (x.user_id, x.item_id, x.timestamp)


def test_random_split_is_disjoint_and_complete() -> None:
    events = _events()
    split = random_split(events, test_share=0.2, seed=1)
    assert len(split.train) + len(split.test) == len(events)
    assert Counter(map(_key, split.train)) + Counter(map(_key, split.test)) == Counter(
        map(_key, events)
    )
    assert not set(map(_key, split.train)) & set(map(_key, split.test))


def test_random_split_holds_out_the_share_of_every_user() -> None:
    split = random_split(_events(), test_share=0.2, seed=1)
    per_user = Counter(x.user_id for x in split.test)
    assert set(per_user.values()) == {held_out_count(17, 0.2)} == {3}
    assert split.eval_users == 30


def test_random_split_is_seeded() -> None:
    events = _events()
    a = random_split(events, test_share=0.2, seed=5)
    b = random_split(events, test_share=0.2, seed=5)
    c = random_split(events, test_share=0.2, seed=6)
    assert a.test == b.test
    assert a.test != c.test


def test_splits_keep_the_input_order() -> None:
    events = _events()
    split = random_split(events, test_share=0.3, seed=0)
    position = {_key(x): i for i, x in enumerate(events)}
    for part in (split.train, split.test):
        order = [position[_key(x)] for x in part]
        assert order == sorted(order)


def test_held_out_count_keeps_one_training_event() -> None:
    assert held_out_count(1, 0.5) == 0
    assert held_out_count(2, 0.9) == 1
    assert held_out_count(10, 0.25) == 3  # 2.5 rounds half up
    assert held_out_count(5, 0.2) == 1


def test_temporal_split_holds_out_each_users_newest_events() -> None:
    events = _events()
    split = temporal_split(events, test_share=0.2, has_timestamps=True)
    newest_train: dict[str, float] = {}
    for x in split.train:
        newest_train[x.user_id] = max(newest_train.get(x.user_id, -1.0), x.timestamp)
    for x in split.test:
        assert x.timestamp > newest_train[x.user_id]
    assert Counter(x.user_id for x in split.test) == {f"u{u}": 3 for u in range(30)}


def test_temporal_split_without_timestamps_is_an_error() -> None:
    with pytest.raises(ConfigError, match="timestamps"):
        temporal_split(_events(), test_share=0.2, has_timestamps=False)


def test_temporal_split_only_splits_users_with_real_timestamps() -> None:
    events = _events()
    timed = {"u0", "u1"}
    split = temporal_split(events, test_share=0.2, has_timestamps=False, timed_users=timed)
    assert {x.user_id for x in split.test} == timed
    assert split.train_only_users == 28
    with pytest.raises(ConfigError, match="no user"):
        temporal_split(events, test_share=0.2, has_timestamps=False, timed_users=set())


def test_a_split_with_nothing_to_hold_out_is_an_error() -> None:
    one_each = [Interaction(f"u{i}", "a", EventType.LIKE, float(i)) for i in range(5)]
    with pytest.raises(InvalidInput, match="holds out no event"):
        random_split(one_each, test_share=0.2, seed=0)
    with pytest.raises(InvalidInput, match="strictly between"):
        random_split(_events(), test_share=1.0, seed=0)


def test_provided_split_drops_test_users_unknown_to_train() -> None:
    train = [Interaction("u1", "a", EventType.LIKE, 1.0)]
    test = [
        Interaction("u1", "b", EventType.LIKE, 2.0),
        Interaction("u2", "b", EventType.LIKE, 2.0),
    ]
    split = provided_split(train, test)
    assert [x.user_id for x in split.test] == ["u1"]
    assert split.protocol == "provided"
    with pytest.raises(InvalidInput, match="empty"):
        provided_split(train, [])
    with pytest.raises(InvalidInput, match="no user"):
        provided_split(train, test[1:])
