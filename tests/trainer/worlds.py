"""Small seeded data and configs for the trainer tests."""

from __future__ import annotations

import numpy as np

from trainer.data.dataset import Dataset
from trainer.data.load import dataset_of
from trainer.data.synthetic import make_world
from trainer.learn.config import TrainConfig


def small_dataset(*, n_items: int = 200, n_users: int = 60, seed: int = 0) -> Dataset:
    """A planted-taste world: 8 categories, 30 events per user."""
    return dataset_of(
        make_world(
            n_items=n_items, n_users=n_users, n_categories=8, dim=8, events_per_user=30, seed=seed
        )
    )


def small_config(**overrides: object) -> TrainConfig:
    """A model small enough to train in about a second."""
    base: dict[str, object] = {
        "dim": 16,
        "history_len": 10,
        "batch_size": 128,
        "epochs": 8,
        "n_sampled": 64,
        "threads": 1,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def category_share(
    vectors: np.ndarray, state: np.ndarray, categories: list[str | None], wanted: set[str], k: int
) -> float:
    """Share of the top-k items by cosine whose category is in ``wanted``."""
    top = np.argsort(-(vectors @ state))[:k]
    return float(np.mean([categories[i] in wanted for i in top]))
