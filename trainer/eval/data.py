"""What ``veto eval`` evaluates on: a dataset read by the trainer's own readers, or a provided
train/test pair (generic CSV or ``user item item …`` lines, ``--split-format``), and the split
of one seed.

Temporal split on MovieLens-1M as shipped here: only users 1–2999 have real timestamps (the
``ratings.users0001-2999`` file); the others have file order only. Those users are split in
time and evaluated; the others stay wholly in train (they still shape the model). A complete
``ratings.dat`` has timestamps for everyone and needs no such restriction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from trainer.data.dataset import Dataset
from trainer.data.load import load_dataset
from trainer.data.movielens import LATIN1, ml1m_rating_files
from trainer.data.textfile import open_lines
from trainer.eval.options import EvalOptions
from trainer.eval.split import Split, provided_split, random_split, temporal_split
from veto.errors import ConfigError
from veto.events import Interaction


@dataclass(frozen=True)
class EvalData:
    """The catalog and either all interactions (to split) or a provided train/test pair."""

    name: str
    item_ids: list[str]
    categories: list[str | None]
    interactions: list[Interaction]
    has_timestamps: bool
    timed_users: frozenset[str] | None = None  # users with real timestamps, if only some have
    provided: tuple[list[Interaction], list[Interaction]] | None = None

    @classmethod
    def of(cls, dataset: Dataset, *, timed_users: frozenset[str] | None = None) -> EvalData:
        """A whole dataset, to be split."""
        return cls(
            name=dataset.name,
            item_ids=dataset.item_ids,
            categories=dataset.categories,
            interactions=dataset.interactions,
            has_timestamps=dataset.has_timestamps,
            timed_users=timed_users,
        )


def ml1m_timed_users(directory: Path) -> frozenset[str] | None:
    """Users of the ML-1M rating files that carry timestamps (4 fields); None if all do."""
    files = ml1m_rating_files(directory)
    timed: set[str] = set()
    untimed = False
    for path in files:
        users: set[str] = set()
        fields = 0
        for _, line in open_lines(path, encoding=LATIN1):
            if not line.strip():
                continue
            parts = line.split("::")
            fields = fields or len(parts)
            users.add(parts[0])
        if fields == 4:
            timed |= users
        else:
            untimed = True
    return frozenset(timed) if untimed else None


def _provided(options: EvalOptions) -> EvalData:
    assert options.train_file is not None and options.test_file is not None
    # The split format names the reader: "csv" and "lines" are both dataset names.
    fmt, like_min, dislike_max = options.split_format, options.like_min, options.dislike_max
    train = load_dataset(fmt, options.train_file, like_min=like_min, dislike_max=dislike_max)
    test = load_dataset(fmt, options.test_file, like_min=like_min, dislike_max=dislike_max)
    # The catalog: the train file's items, then items only the test file names (cold items).
    catalog: dict[str, str | None] = dict(zip(train.item_ids, train.categories, strict=True))
    for item, category in zip(test.item_ids, test.categories, strict=True):
        if catalog.get(item) is None:
            catalog[item] = category
    return EvalData(
        name=f"provided {fmt} ({options.train_file.name}, {options.test_file.name})",
        item_ids=list(catalog),
        categories=list(catalog.values()),
        interactions=train.interactions,
        has_timestamps=train.has_timestamps and test.has_timestamps,
        provided=(train.interactions, test.interactions),
    )


def load_eval_data(options: EvalOptions) -> EvalData:
    """Read the dataset (or the provided split) once; every seed splits the same data."""
    if options.train_file is not None:
        return _provided(options)
    dataset: Dataset = load_dataset(
        options.dataset,
        options.path,
        like_min=options.like_min,
        dislike_max=options.dislike_max,
        items=options.items,
    )
    timed = None
    if options.split == "temporal" and not dataset.has_timestamps:
        if options.dataset != "ml-1m" or options.path is None:
            raise ConfigError(
                f"the temporal split needs timestamps and dataset {options.dataset!r} has none"
            )
        timed = ml1m_timed_users(options.path)
    return EvalData.of(dataset, timed_users=timed)


# The validation slice's own seed: never the seed of the split it is cut from.
VALIDATION_SEED = 1_000_003


def split_for_seed(data: EvalData, options: EvalOptions, *, seed: int) -> Split:
    """The split of one repeat (seeded random, temporal or provided), or with
    ``options.validation`` a validation split cut from its training half by the same
    protocol (random for a provided split): the test half is then never read."""
    split = _split(data, options, seed=seed)
    if not options.validation:
        return split
    if split.protocol == "temporal":
        inner = temporal_split(
            split.train,
            test_share=options.test_share,
            has_timestamps=data.has_timestamps,
            timed_users=data.timed_users,
        )
    else:
        inner = random_split(
            split.train, test_share=options.test_share, seed=seed + VALIDATION_SEED
        )
    return replace(inner, protocol=f"{split.protocol} validation")


def _split(data: EvalData, options: EvalOptions, *, seed: int) -> Split:
    if data.provided is not None:
        return provided_split(*data.provided)
    if options.split == "temporal":
        return temporal_split(
            data.interactions,
            test_share=options.test_share,
            has_timestamps=data.has_timestamps,
            timed_users=data.timed_users,
        )
    return random_split(data.interactions, test_share=options.test_share, seed=seed)
