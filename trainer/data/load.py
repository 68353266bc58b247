"""``load_dataset``: every dataset the trainer reads, by name.

    synthetic   trainer.data.synthetic.make_world (planted categories, tastes); ``items``: size
    ml-100k     a directory with u.data and u.item
    ml-1m       a directory with movies.dat and ratings.dat, or the partial rating files
    kuairand    a KuaiRand-style TSV (user_id, video_id, label, time_ms), or its directory
    csv         user,item,rating|type[,timestamp][,category], or its directory
    lines       ``user item item …`` per line (LightGCN / NGCF train.txt), every item a like

Star ratings: >= ``like_min`` like, <= ``dislike_max`` dislike, in between a click (kept in
histories as neutral context; not a label unless ``TrainConfig.click_weight`` > 0).
Every reader validates every row and raises ``DatasetError`` naming file and line.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.dataset import Dataset
from trainer.data.lines import load_lines
from trainer.data.movielens import load_ml1m, load_ml100k
from trainer.data.synthetic import SyntheticWorld, make_world
from trainer.data.tabular import load_csv, load_kuairand
from trainer.data.textfile import RatingMap
from veto.errors import ConfigError

DATASETS = ("synthetic", "ml-100k", "ml-1m", "kuairand", "csv", "lines")
SYNTHETIC_ITEMS = 2_000


def load_synthetic(*, items: int | None, seed: int) -> Dataset:
    """The synthetic world: 20 planted categories, one user per 20 items (at least 500)."""
    n_items = items or SYNTHETIC_ITEMS
    if n_items < 20:
        raise ConfigError(f"the synthetic dataset needs at least 20 items, got {n_items}")
    return dataset_of(make_world(n_items=n_items, n_users=max(500, n_items // 20), seed=seed))


def dataset_of(world: SyntheticWorld) -> Dataset:
    """A synthetic world as a dataset (its event times are timestamps)."""
    return Dataset(
        name="synthetic",
        item_ids=world.item_ids,
        categories=list(world.categories),
        interactions=world.interactions,
        has_timestamps=True,
    )


def load_dataset(
    name: str,
    path: Path | None,
    *,
    like_min: float = 4,
    dislike_max: float = 2,
    items: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load and validate a dataset; ``items`` and ``seed`` only apply to ``synthetic``."""
    if name == "synthetic":
        return load_synthetic(items=items, seed=seed)
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; one of {', '.join(DATASETS)}")
    if path is None:
        raise ConfigError(f"dataset {name!r} needs a path")
    if name == "kuairand":
        return load_kuairand(path)
    if name == "csv":
        return load_csv(path, like_min=like_min, dislike_max=dislike_max)
    if name == "lines":
        return load_lines(path)
    stars = RatingMap(like_min=like_min, dislike_max=dislike_max, low=1, high=5)
    if name == "ml-100k":
        return load_ml100k(path, rating_map=stars)
    return load_ml1m(path, rating_map=stars)
