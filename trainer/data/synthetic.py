"""A synthetic world with planted structure: categories of items with nearby vectors and
users who like some categories and dislike another. The demo catalog of ``veto up``, the
``synthetic`` dataset of ``veto bootstrap``, and test data, all seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from veto.events import EventType, Interaction


@dataclass(frozen=True)
class SyntheticWorld:
    item_ids: list[str]
    categories: list[str]
    item_vectors: np.ndarray  # (N, D) float32 unit rows: category centre + noise
    user_ids: list[str]
    liked_categories: dict[str, tuple[str, ...]]
    disliked_categories: dict[str, tuple[str, ...]]
    interactions: list[Interaction]  # oldest first


def make_world(
    *,
    n_items: int = 2_000,
    n_users: int = 500,
    n_categories: int = 20,
    dim: int = 32,
    events_per_user: int = 30,
    seed: int = 0,
    start_time: float = 1_700_000_000.0,
) -> SyntheticWorld:
    """Users like items of their 2 liked categories (70 %), dislike items of their disliked
    category (20 %) and skip random items (10 %)."""
    if n_items < n_categories or n_categories < 4:
        raise ValueError("need n_categories >= 4 and n_items >= n_categories")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_categories, dim)).astype(np.float32)
    item_cat = np.arange(n_items) % n_categories
    rng.shuffle(item_cat)
    vectors = centres[item_cat] + 0.5 * rng.standard_normal((n_items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    item_ids = [f"i{i}" for i in range(n_items)]
    cat_names = [f"c{c}" for c in range(n_categories)]
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_categories)]
    user_ids = [f"u{u}" for u in range(n_users)]
    liked: dict[str, tuple[str, ...]] = {}
    disliked: dict[str, tuple[str, ...]] = {}
    interactions: list[Interaction] = []
    t = start_time
    for user in user_ids:
        cats = rng.choice(n_categories, size=3, replace=False)
        liked[user] = (cat_names[cats[0]], cat_names[cats[1]])
        disliked[user] = (cat_names[cats[2]],)
        for _ in range(events_per_user):
            roll = rng.random()
            if roll < 0.7:
                kind, pool = EventType.LIKE, by_cat[cats[rng.integers(2)]]
            elif roll < 0.9:
                kind, pool = EventType.DISLIKE, by_cat[cats[2]]
            else:
                kind, pool = EventType.SKIP, np.arange(n_items)
            item = int(pool[rng.integers(len(pool))])
            t += float(rng.exponential(30.0))
            interactions.append(Interaction(user, item_ids[item], kind, t))
    interactions.sort(key=lambda x: x.timestamp)
    return SyntheticWorld(
        item_ids=item_ids,
        categories=[cat_names[c] for c in item_cat],
        item_vectors=vectors.astype(np.float32),
        user_ids=user_ids,
        liked_categories=liked,
        disliked_categories=disliked,
        interactions=interactions,
    )
