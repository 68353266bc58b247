"""trainer.eval.similarity: category labels, k-means clusters where there are none."""

from __future__ import annotations

import numpy as np

from trainer.data.synthetic import make_world
from trainer.eval.similarity import category_labels, kmeans_labels, similarity_labels


def test_category_labels_use_the_first_genre() -> None:
    labels = category_labels(["Comedy|Romance", "Comedy", "Drama|Comedy"])
    assert labels is not None
    assert labels[0] == labels[1] != labels[2]


def test_items_without_category_are_similar_to_nothing() -> None:
    labels = category_labels(["A", None, None, "A"])
    assert labels is not None
    assert labels[0] == labels[3]
    assert len({int(labels[1]), int(labels[2]), int(labels[0])}) == 3
    assert category_labels([None, None]) is None


def test_kmeans_recovers_planted_categories() -> None:
    world = make_world(n_items=300, n_users=5, n_categories=5, dim=16, seed=1)
    labels = kmeans_labels(world.item_vectors, n_clusters=5, seed=0)
    truth = np.array([int(c[1:]) for c in world.categories])
    # Each cluster is (almost) one planted category.
    purity = sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(truth)
    assert purity > 0.95
    assert np.array_equal(labels, kmeans_labels(world.item_vectors, n_clusters=5, seed=0))


def test_similarity_falls_back_to_kmeans_without_categories() -> None:
    world = make_world(n_items=100, n_users=5, n_categories=4, dim=8, seed=0)
    labels, source = similarity_labels([None] * 100, [world.item_vectors], n_clusters=4, seed=0)
    assert source == "kmeans"
    assert labels.shape == (100,)
    _, source = similarity_labels(world.categories, [world.item_vectors], n_clusters=4, seed=0)
    assert source == "category"
