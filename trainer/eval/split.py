"""Train/test splits for offline evaluation: per-user random, per-user temporal, provided.

Every split is per user: each user's events are divided between train and test, so a test
user always has a training history to compute their state from. A user with fewer than two
events stays wholly in train (nothing to hold out without leaving an empty history). Both
halves keep the input order (oldest first), which the history encoding relies on.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from veto.errors import ConfigError, InvalidInput
from veto.events import Interaction


@dataclass(frozen=True)
class Split:
    """Held-out events and the rest; ``eval_users`` counts users with at least one test event."""

    train: list[Interaction]
    test: list[Interaction]
    protocol: str
    eval_users: int
    # Users kept wholly in train because the protocol cannot hold any of their events out
    # (e.g. no timestamps under the temporal protocol).
    train_only_users: int = 0


def _by_user(interactions: Sequence[Interaction]) -> dict[str, list[int]]:
    """Positions of each user's events, in input order, users in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for pos, event in enumerate(interactions):
        groups.setdefault(event.user_id, []).append(pos)
    return groups


def _check_share(test_share: float) -> None:
    if not 0.0 < test_share < 1.0:
        raise InvalidInput(f"test share must be strictly between 0 and 1, got {test_share}")


def held_out_count(n_events: int, test_share: float) -> int:
    """Events held out of a user with ``n_events``: round(share·n), keeping one in train."""
    if n_events < 2:
        return 0
    # Round half up (not banker's rounding) so the count is a plain function of the share.
    return min(math.floor(test_share * n_events + 0.5), n_events - 1)


def _assemble(
    interactions: Sequence[Interaction],
    test_positions: list[int],
    *,
    protocol: str,
    train_only_users: int = 0,
) -> Split:
    is_test = np.zeros(len(interactions), dtype=bool)
    is_test[np.asarray(test_positions, dtype=np.int64)] = True
    train = [e for e, t in zip(interactions, is_test, strict=True) if not t]
    test = [e for e, t in zip(interactions, is_test, strict=True) if t]
    if not test:
        raise InvalidInput(
            f"the {protocol} split holds out no event: the users have too few events "
            "for the test share"
        )
    return Split(
        train=train,
        test=test,
        protocol=protocol,
        eval_users=len({e.user_id for e in test}),
        train_only_users=train_only_users,
    )


def random_split(interactions: Sequence[Interaction], *, test_share: float, seed: int) -> Split:
    """Seeded per-user random split: ``held_out_count`` events of each user drawn uniformly."""
    _check_share(test_share)
    rng = np.random.default_rng(seed)
    test_positions: list[int] = []
    for positions in _by_user(interactions).values():
        n_test = held_out_count(len(positions), test_share)
        if n_test:
            picked = rng.choice(len(positions), size=n_test, replace=False)
            test_positions.extend(positions[i] for i in picked)
    return _assemble(interactions, test_positions, protocol="random")


def temporal_split(
    interactions: Sequence[Interaction],
    *,
    test_share: float,
    has_timestamps: bool,
    timed_users: Collection[str] | None = None,
) -> Split:
    """Per-user temporal split: each user's newest ``held_out_count`` events are held out.

    A dataset without real timestamps cannot be split in time, unless ``timed_users`` names
    the users whose timestamps are real (MovieLens-1M here: users 1–2999); only those are
    split, the others stay wholly in train, so they still shape the model but are not
    evaluated.
    """
    _check_share(test_share)
    if not has_timestamps and timed_users is None:
        raise ConfigError("the temporal split needs timestamps and this dataset has none")
    groups = _by_user(interactions)
    test_positions: list[int] = []
    train_only = 0
    for user, positions in groups.items():
        if timed_users is not None and user not in timed_users:
            train_only += 1
            continue
        n_test = held_out_count(len(positions), test_share)
        if n_test:
            stamps = np.array([interactions[p].timestamp for p in positions], dtype=np.float64)
            order = np.argsort(stamps, kind="stable")  # ties keep input order
            test_positions.extend(positions[i] for i in order[len(positions) - n_test :])
    if train_only == len(groups):
        raise ConfigError("the temporal split needs timestamps and no user has real ones")
    return _assemble(interactions, test_positions, protocol="temporal", train_only_users=train_only)


def provided_split(train: Sequence[Interaction], test: Sequence[Interaction]) -> Split:
    """A split given as two files: test events of users unseen in train cannot be ranked."""
    if not test:
        raise InvalidInput("the provided test set is empty")
    if not train:
        raise InvalidInput("the provided train set is empty")
    known = {e.user_id for e in train}
    kept = [e for e in test if e.user_id in known]
    if not kept:
        raise InvalidInput("no user of the provided test set has events in the train set")
    return Split(
        train=list(train),
        test=kept,
        protocol="provided",
        eval_users=len({e.user_id for e in kept}),
    )
