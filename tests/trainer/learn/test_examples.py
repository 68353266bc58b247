"""build_examples: each labelled event gets the user's history strictly before it."""

from __future__ import annotations

import numpy as np

from trainer.learn.examples import Examples, build_examples
from veto.events import EventType, Interaction

L, D, S, C = EventType.LIKE, EventType.DISLIKE, EventType.SKIP, EventType.CLICK


def _events() -> list[Interaction]:
    seq = [("a", "i0", L), ("b", "i1", L), ("a", "i1", D), ("a", "i2", S), ("a", "i3", L)]
    return [Interaction(u, i, t, float(n)) for n, (u, i, t) in enumerate(seq)]


def _of_events(*, dislike_input: bool = True, **kw: object) -> Examples:
    """``build_examples`` over ``_events()`` with L = 3 and a four-item catalog."""
    index = {f"i{n}": n for n in range(4)}
    return build_examples(
        _events(),
        item_index=index,
        user_index={},
        history_len=3,
        dislike_input=dislike_input,
        **kw,  # type: ignore[arg-type]
    )


def test_histories_are_the_events_before_newest_first() -> None:
    index = {f"i{n}": n for n in range(4)}
    ex = build_examples(
        _events(), item_index=index, user_index={"a": 0}, history_len=3, dislike_input=True
    )
    # Labelled: a/i0 like, a/i1 dislike, a/i3 like, b/i1 like (skips are not labels).
    assert ex.labels.tolist() == [0, 1, 3, 1]
    assert ex.kinds.tolist() == [int(L), int(D), int(L), int(L)]
    np.testing.assert_array_equal(ex.items, [[-1, -1, -1], [0, -1, -1], [2, 1, 0], [-1, -1, -1]])
    np.testing.assert_array_equal(ex.types[2], [int(S), int(D), int(L)])
    assert ex.users.tolist() == [0, 0, 0, -1]


def test_without_the_dislike_feature_dislikes_leave_the_histories() -> None:
    index = {f"i{n}": n for n in range(4)}
    ex = build_examples(
        _events(), item_index=index, user_index={}, history_len=3, dislike_input=False
    )
    np.testing.assert_array_equal(ex.items[2], [2, 0, -1])
    assert int(D) in ex.kinds.tolist()  # still a label; the objective decides


def test_clicks_are_labels_only_with_a_weight() -> None:
    events = [Interaction("a", "i0", C, 0.0), Interaction("a", "i1", L, 1.0)]
    index = {"i0": 0, "i1": 1}
    kw = {"item_index": index, "user_index": {}, "history_len": 2, "dislike_input": True}
    assert build_examples(events, **kw).labels.tolist() == [1]  # type: ignore[arg-type]
    weighted = build_examples(events, click_weight=0.5, **kw)  # type: ignore[arg-type]
    assert weighted.labels.tolist() == [0, 1]


def test_bag_context_is_the_whole_history_but_the_event_itself() -> None:
    ex = _of_events(context="bag")
    # User a's history oldest first: i0 L, i1 D, i2 S, i3 L; each label sees the others.
    assert ex.labels.tolist() == [0, 1, 3, 1]
    np.testing.assert_array_equal(
        ex.items, [[3, 2, 1], [3, 2, 0], [2, 1, 0], [-1, -1, -1]]
    )  # newest first, at most L, the label's own event left out
    np.testing.assert_array_equal(ex.types[0], [int(L), int(S), int(D)])


def test_bag_context_keeps_the_newest_events_when_the_history_is_longer() -> None:
    events = [Interaction("a", f"i{n}", L, float(n)) for n in range(6)]
    index = {f"i{n}": n for n in range(6)}
    kw = {"item_index": index, "user_index": {}, "history_len": 2, "dislike_input": True}
    ex = build_examples(events, context="bag", **kw)  # type: ignore[arg-type]
    # The newest two are i5, i4; the examples of i5 and i4 skip themselves.
    np.testing.assert_array_equal(ex.items, [[5, 4]] * 4 + [[5, 3], [4, 3]])


def test_bag_context_without_the_dislike_feature_keeps_dislike_labels_out_of_inputs() -> None:
    ex = _of_events(dislike_input=False, context="bag")
    # The dislike of i1 is in no input; its own example sees the three other events.
    np.testing.assert_array_equal(ex.items[1], [3, 2, 0])
    np.testing.assert_array_equal(ex.items[0], [3, 2, -1])


def test_only_targets_are_labels_and_the_rest_is_context() -> None:
    ex = _of_events(targets=[False, False, False, False, True])  # only a/i3 like
    assert ex.labels.tolist() == [3]
    np.testing.assert_array_equal(ex.items[0], [2, 1, 0])


def test_mix_context_gives_each_example_one_of_the_two() -> None:
    events = [Interaction(f"u{n % 7}", f"i{n % 9}", L, float(n)) for n in range(400)]
    index = {f"i{n}": n for n in range(9)}
    kw = {"item_index": index, "user_index": {}, "history_len": 4, "dislike_input": True}
    causal = build_examples(events, context="causal", **kw)  # type: ignore[arg-type]
    bag = build_examples(events, context="bag", **kw)  # type: ignore[arg-type]
    mix = build_examples(events, context="mix", **kw)  # type: ignore[arg-type]
    as_causal = (mix.items == causal.items).all(axis=1)
    as_bag = (mix.items == bag.items).all(axis=1)
    assert (as_causal | as_bag).all()
    assert 0.3 < as_bag[~as_causal].size / len(mix) < 0.7  # about half differ from causal
    again = build_examples(events, context="mix", **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again.items, mix.items)  # deterministic
