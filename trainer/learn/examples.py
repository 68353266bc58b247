"""Training examples: for each labelled feedback event, the user's history *before* it
(newest first) is the input and the event's item the label.

Legend: E examples, L history length.

Labels: a like is a positive (softmax term), a dislike a negative (NTR term, or an extra
softmax negative, or dropped, by objective), a click a positive only with a click weight; a
skip is never a label. Every event, labelled or not, enters the histories of later events,
except dislikes when the dislike feature is off.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainer.learn.config import CONTEXTS, TrainConfig
from veto.errors import UnknownItem
from veto.events import EventType, Interaction

I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
UNKNOWN_OWNER = -1  # examples kept before owners were recorded (an older checkpoint)


def owner_of(user_id: str) -> int:
    """A stable 63-bit hash of a user id: whose example it is, so that an erasure or a
    withdrawn decision can find the user's examples without keeping their id. Never an input
    of the model. (A collision only drops another user's examples too.)"""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") >> 1


def owners_of(user_ids: Iterable[str]) -> I64:
    """``owner_of`` each user id."""
    return np.asarray([owner_of(u) for u in user_ids], dtype=np.int64)


@dataclass(frozen=True)
class Examples:
    """Column arrays of E examples (compact dtypes; widened per batch)."""

    items: I32  # (E, L) history item rows, newest first, -1 = padding
    types: I8  # (E, L) history event types
    labels: I32  # (E,) label item row
    kinds: I8  # (E,) EventType of the label event
    users: I32  # (E,) row of the user's embedding, -1 = none
    owners: I64  # (E,) owner_of(the user), UNKNOWN_OWNER when not recorded

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def history_len(self) -> int:
        return int(self.items.shape[1])

    def take(self, rows: npt.NDArray[np.int64]) -> Examples:
        """The examples at ``rows``."""
        return Examples(
            self.items[rows],
            self.types[rows],
            self.labels[rows],
            self.kinds[rows],
            self.users[rows],
            self.owners[rows],
        )

    @classmethod
    def empty(cls, history_len: int) -> Examples:
        return cls(
            np.full((0, history_len), -1, np.int32),
            np.zeros((0, history_len), np.int8),
            np.zeros(0, np.int32),
            np.zeros(0, np.int8),
            np.zeros(0, np.int32),
            np.zeros(0, np.int64),
        )

    @classmethod
    def concat(cls, parts: Sequence[Examples]) -> Examples:
        if not parts:
            raise ValueError("concat needs at least one part")
        return cls(
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.types for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.kinds for p in parts]),
            np.concatenate([p.users for p in parts]),
            np.concatenate([p.owners for p in parts]),
        )


def is_label(kind: EventType, *, click_weight: float) -> bool:
    """Whether an event of this type is a training label."""
    return kind in (EventType.LIKE, EventType.DISLIKE) or (
        kind == EventType.CLICK and click_weight > 0
    )


def _mix_hash(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A cheap deterministic scramble (Knuth's multiplicative hash) to pick a context."""
    out: npt.NDArray[np.int64] = ((x.astype(np.int64) * 2654435761) >> 7) & 0xFFFF
    return out


def _bag_offsets(
    *, n_history: int, own: npt.NDArray[np.int64], history_len: int
) -> npt.NDArray[np.int64]:
    """(e, L) positions in the padded history (P = L + 1 pads, then the h events): the
    newest L events but each example's own (``own``, -1 when its event is not in the
    history, e.g. a dislike without the dislike feature)."""
    newest = n_history + history_len  # padded position of the newest event
    window = newest - np.arange(history_len + 1)  # (L + 1,) newest first
    keep = window[None, :] != own[:, None]  # (e, L + 1)
    # The first L kept positions of each row, in order (a stable sort puts kept ones first).
    pick = np.argsort(~keep, axis=1, kind="stable")[:, :history_len]  # (e, L)
    out: npt.NDArray[np.int64] = window[pick]
    return out


def build_examples(
    interactions: Sequence[Interaction],
    *,
    item_index: Mapping[str, int],
    user_index: Mapping[str, int],
    history_len: int,
    dislike_input: bool,
    click_weight: float = 0.0,
    targets: Sequence[bool] | None = None,
    context: str = "causal",
) -> Examples:
    """Examples of every labelled event, histories from the same interactions (oldest first).

    ``context``: ``causal``, the history before the event; ``bag``, the user's whole history
    but the event itself (leave-one-out: what the service encodes when it serves, the whole
    recent history); ``mix``, each example one of the two (half each, deterministic).
    Either way the newest ``history_len`` events. ``targets`` (aligned with
    ``interactions``) limits the labels to the marked events; the others are context only (a
    round's users' older history). Raises KeyError for an item not in ``item_index``; users
    missing from ``user_index`` get row -1.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r} is not one of {CONTEXTS}")
    by_user: dict[str, list[int]] = {}
    for pos, x in enumerate(interactions):
        by_user.setdefault(x.user_id, []).append(pos)
    parts: list[Examples] = []
    pad = np.full(history_len + 1, -1, np.int32)
    for user, positions in by_user.items():
        events = [interactions[p] for p in positions]
        rows = np.array([item_index[x.item_id] for x in events], np.int32)  # (n,)
        kinds = np.array([int(x.type) for x in events], np.int8)  # (n,)
        in_history = kinds != EventType.DISLIKE if not dislike_input else np.ones(len(events), bool)
        labelled = np.array(
            [
                is_label(x.type, click_weight=click_weight) and (targets is None or targets[p])
                for x, p in zip(events, positions, strict=True)
            ],
            bool,
        )
        if not labelled.any():
            continue
        # (P + h,) oldest first, padded: P = L + 1 so a bag window can drop one event.
        h_items = np.concatenate([pad, rows[in_history]])
        h_types = np.concatenate([np.zeros(history_len + 1, np.int8), kinds[in_history]])
        # Number of history events strictly before each event: the end of its causal window.
        before = np.cumsum(in_history) - in_history  # (n,)
        ends = before[labelled] + history_len + 1  # (e,)
        offsets = ends[:, None] - 1 - np.arange(history_len)[None, :]  # (e, L) newest first
        if context != "causal":
            bag = _bag_offsets(
                n_history=int(in_history.sum()),
                own=np.where(in_history, before + history_len + 1, -1)[labelled],
                history_len=history_len,
            )
            if context == "bag":
                offsets = bag
            else:  # mix: each example one or the other, seeded by the label's position
                pick = (_mix_hash(np.flatnonzero(labelled) + len(parts)) & 1).astype(bool)
                offsets = np.where(pick[:, None], bag, offsets)
        parts.append(
            Examples(
                items=h_items[offsets],
                types=h_types[offsets],
                labels=rows[labelled],
                kinds=kinds[labelled],
                users=np.full(int(labelled.sum()), user_index.get(user, -1), np.int32),
                owners=np.full(int(labelled.sum()), owner_of(user), np.int64),
            )
        )
    if not parts:
        return Examples.empty(history_len)
    return Examples.concat(parts)


def make_examples(
    interactions: Sequence[Interaction],
    *,
    item_index: Mapping[str, int],
    user_index: Mapping[str, int],
    config: TrainConfig,
    targets: Sequence[bool] | None = None,
) -> Examples:
    """The objective's examples (``build_examples`` with the config's rules): dislikes stay
    in the histories where a term reads them, and are labels only with an NTR term."""
    # ssm-neg reads dislikes from the histories even without the dislike input feature.
    dislike_input = config.dislike_input or config.dislike_negatives
    try:
        examples = build_examples(
            interactions,
            item_index=item_index,
            user_index=user_index,
            history_len=config.history_len,
            dislike_input=dislike_input,
            click_weight=config.click_weight,
            targets=targets,
            context=config.context,
        )
    except KeyError as exc:
        raise UnknownItem(f"item {exc.args[0]!r} is not in the catalog") from exc
    if not config.uses_ntr:
        examples = examples.take(np.flatnonzero(examples.kinds != int(EventType.DISLIKE)))
    return examples
