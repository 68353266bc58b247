"""trainer.eval.similarity: category labels, k-means clusters where there are none."""

from __future__ import annotations

import numpy as np

from trainer.data.synthetic import make_world
from trainer.eval.similarity import (
    Similarity,
    category_labels,
    category_masks,
    kmeans_labels,
    similarity_labels,
)


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
    similarity, source = similarity_labels([None] * 100, [world.item_vectors], n_clusters=4, seed=0)
    assert source == "kmeans"
    assert similarity.labels.shape == (100,) and similarity.masks is None
    _, source = similarity_labels(world.categories, [world.item_vectors], n_clusters=4, seed=0)
    assert source == "category"


def test_multi_genre_items_are_similar_when_their_genre_sets_overlap_by_half() -> None:
    categories = ["Comedy|Romance", "Comedy", "Drama|Romance|War", "Romance|Comedy", None]
    masks = category_masks(categories)
    assert masks is not None
    labels = category_labels(categories)
    assert labels is not None
    similarity = Similarity(labels, masks)
    near = similarity.similar(np.array([[1, 2, 3, 4]]), np.array([0]))
    # Comedy: 1/2 -> similar; Drama|Romance|War: 1/4 -> not; same set -> similar; none -> not.
    assert near.tolist() == [[True, False, True, False]]


def test_single_category_catalogs_compare_labels() -> None:
    assert category_masks(["A", "B", None]) is None  # no multi-valued category: labels decide
