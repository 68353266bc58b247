"""The evaluated users as arrays: training histories (what the encoder reads), training items
(what the ranking masks) and held-out likes and dislikes (what the metrics count).

Legend: U evaluated users, L history length, P (user, item) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veto.encoder import UserEncoder
from veto.events import EventType, Interaction
from veto.ranking import penalty_sources

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Pairs:
    """(user row, item row) pairs, e.g. every training item of every evaluated user."""

    rows: I64  # (P,)
    items: I64  # (P,)

    def codes(self, n_items: int) -> I64:
        """One int64 per pair (row·N + item), for vectorised membership tests."""
        out: I64 = self.rows * np.int64(n_items) + self.items
        return out


@dataclass(frozen=True)
class EvalUsers:
    user_ids: list[str]
    hist_items: I64  # (U, L) item rows, newest first, -1 = padding
    hist_types: I64  # (U, L) EventType codes
    seen: Pairs  # every training item of each user: masked in the ranking
    disliked: Pairs  # each user's training dislikes: the dislike penalty's sources
    # The dislikes among each user's newest L training events, newest first (whatever the
    # encoder reads): the penalty's sources under a window (veto.ranking.penalty_sources).
    recent_disliked: Pairs
    likes: Pairs  # held-out likes not already in the user's training items
    dislikes: Pairs  # held-out dislikes not already in the user's training items


def history_arrays(
    events_by_user: Sequence[Sequence[tuple[int, int]]], history_len: int
) -> tuple[I64, I64]:
    """(U, L) item rows and types from each user's (item row, type) events, oldest first."""
    n = len(events_by_user)
    items = np.full((n, history_len), -1, dtype=np.int64)
    types = np.zeros((n, history_len), dtype=np.int64)
    for row, events in enumerate(events_by_user):
        newest = list(reversed(events[-history_len:])) if history_len else []
        if newest:
            items[row, : len(newest)] = [i for i, _ in newest]
            types[row, : len(newest)] = [t for _, t in newest]
    return items, types


def _pairs(rows: list[int], items: list[int]) -> Pairs:
    return Pairs(np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64))


def build_eval_users(
    train: Sequence[Interaction],
    test: Sequence[Interaction],
    *,
    item_index: dict[str, int],
    history_len: int,
    drop_types: frozenset[EventType] = frozenset(),
) -> EvalUsers:
    """Arrays for every user with a held-out event; ``drop_types`` are left out of histories
    (a model trained without the dislike feature never sees dislikes in its input)."""
    user_ids = list(dict.fromkeys(e.user_id for e in test))
    row_of = {u: r for r, u in enumerate(user_ids)}
    events: list[list[tuple[int, int]]] = [[] for _ in user_ids]
    seen_sets: list[set[int]] = [set() for _ in user_ids]
    disliked_sets: list[set[int]] = [set() for _ in user_ids]
    every: list[list[tuple[int, int]]] = [[] for _ in user_ids]  # all types, oldest first
    for e in train:
        row = row_of.get(e.user_id)
        if row is None:
            continue
        item = item_index[e.item_id]
        seen_sets[row].add(item)
        every[row].append((item, int(e.type)))
        if e.type == EventType.DISLIKE:
            # As the service's disliked set: kept whatever the encoder reads (drop_types).
            disliked_sets[row].add(item)
        if e.type not in drop_types:
            events[row].append((item, int(e.type)))
    hist_items, hist_types = history_arrays(events, history_len)
    recent_items, recent_types = history_arrays(every, history_len)
    recent = [
        penalty_sources(i, t, history_len) for i, t in zip(recent_items, recent_types, strict=True)
    ]
    seen_rows = [r for r, items in enumerate(seen_sets) for _ in items]
    seen_items = [i for items in seen_sets for i in items]
    held: dict[EventType, tuple[list[int], list[int]]] = {
        EventType.LIKE: ([], []),
        EventType.DISLIKE: ([], []),
    }
    for e in test:
        if e.type not in held:
            continue
        row, item = row_of[e.user_id], item_index[e.item_id]
        # An item the user also has in train is masked and could never be recommended.
        if item not in seen_sets[row]:
            held[e.type][0].append(row)
            held[e.type][1].append(item)
    return EvalUsers(
        user_ids=user_ids,
        hist_items=hist_items,
        hist_types=hist_types,
        seen=_pairs(seen_rows, seen_items),
        disliked=_pairs(
            [r for r, items in enumerate(disliked_sets) for _ in items],
            [i for items in disliked_sets for i in items],
        ),
        recent_disliked=_pairs(
            [r for r, rows in enumerate(recent) for _ in rows],
            [int(i) for rows in recent for i in rows],
        ),
        likes=_pairs(*held[EventType.LIKE]),
        dislikes=_pairs(*held[EventType.DISLIKE]),
    )


def user_states(
    encoder: UserEncoder, item_vectors: F32, items: I64, types: I64, user_ids: Sequence[str]
) -> F32:
    """(U, D) unit user states, with each known user's own embedding when the model has one."""
    rows = np.array([encoder.user_index.get(u, -1) for u in user_ids], dtype=np.int64)
    return encoder.encode_batch(item_vectors, items, types, rows)
