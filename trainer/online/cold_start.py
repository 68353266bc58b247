"""What a round takes from the catalog (``veto.items``): items it does not have a row for yet,
and the catalog's categories of the items it has.

Cold start. Every item the catalog has (live or hidden, not deleted) that the version being
fine-tuned has no row for gets one, appended, with a cold-start vector:

    the mean of the unit vectors of its category's items in the version, re-normalised;
    else (no category, or a category no item of the version has) the neutral vector: the
    mean of all the version's item vectors, re-normalised (e_0 if that mean is ~0).

Why: the served item representation is the unit row, and a category's items cluster; their
mean direction is, in high dimension, nearer to the cluster's items than most of them are to
each other, so the new item ranks among its category for ``similar`` and for users who like
the category, before any interaction. The neutral vector points at "the average item": it is
deterministic and prefers no category. Items added in the same round do not contribute to
the means (they have nothing learned yet). Once feedback arrives the row is trained like any
other, warm-started from this vector.

Learned or cold. A row added here is cold (each version lists its cold rows, and the service
answers ``"learned": false`` for them) until a round fits an example with the item as its
label or in its history (``trained``): the rule is that a row is learned once its embedding
got a gradient step from feedback on the item. Being drawn as one of a batch's uniformly
sampled negatives also moves a row, but says nothing about the item: it does not count. Cold
rows of deleted items stay cold; rows of versions written before the record are learned.

Deleted items keep their rows in later versions (the service never serves them: the
catalog's tombstone masks them): rows never move, so nothing row-aligned (replay sample,
optimiser and frequency state, IVF ids) has to be renumbered, and a PUT that brings an item
back serves its learned vector again. A deleted item a version never had gets no row.

Categories: an item with a catalog record takes the catalog's category (None when the record
has none), so a PUT that changes a category is in the next version; an item without a record
(a deployment bootstrapped before the catalog) keeps the version's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from trainer.learn.examples import Examples
from veto.catalog import Categories
from veto.items import DELETED, CatalogView

_TINY = 1e-6


@dataclass(frozen=True)
class CatalogDiff:
    """What the version being fine-tuned lacks of the catalog at ``generation``."""

    generation: int
    new_items: list[str] = field(default_factory=list)  # sorted: deterministic row order
    new_categories: list[str | None] = field(default_factory=list)
    recategorised: dict[int, str | None] = field(default_factory=dict)  # row -> category

    def __bool__(self) -> bool:
        return bool(self.new_items or self.recategorised)


def diff(
    view: CatalogView,
    item_index: Mapping[str, int],
    categories: Sequence[str | None],
) -> CatalogDiff:
    """The items ``view`` has that ``item_index`` lacks (deleted ones excepted), and the
    rows whose category the catalog changed."""
    new: list[str] = []
    recategorised: dict[int, str | None] = {}
    for item, state in view.states.items():
        if state == DELETED:
            continue
        row = item_index.get(item)
        category = view.categories.get(item)
        if row is None:
            new.append(item)
        elif categories[row] != category:
            recategorised[row] = category
    new.sort()
    return CatalogDiff(
        generation=view.generation,
        new_items=new,
        new_categories=[view.categories.get(item) for item in new],
        recategorised=recategorised,
    )


def _unit(v: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(v))
    return None if norm < _TINY else (v / norm).astype(np.float32)


def neutral_vector(vectors: np.ndarray) -> np.ndarray:
    """(D,) the mean item direction of ``vectors`` (N, D); e_0 when it cancels out."""
    mean = _unit(np.asarray(vectors, dtype=np.float64).mean(axis=0)) if len(vectors) else None
    if mean is not None:
        return mean
    out = np.zeros(vectors.shape[1], dtype=np.float32)
    out[0] = 1.0
    return out


def cold_vectors(
    vectors: np.ndarray,
    categories: Sequence[str | None],
    wanted: Sequence[str | None],
) -> np.ndarray:
    """(K, D) unit cold-start vectors for items of the ``wanted`` categories, from the
    version's unit ``vectors`` (N, D) and their ``categories`` (N,) (the module's rule)."""
    dim = vectors.shape[1]
    out = np.empty((len(wanted), dim), dtype=np.float32)
    if not len(wanted):
        return out
    neutral = neutral_vector(vectors)
    rows = Categories(categories).rows_by_name()
    means: dict[str | None, np.ndarray] = {None: neutral}
    for k, category in enumerate(wanted):
        if category not in means:
            members = rows.get(category) if category is not None else None
            mean = None
            if members is not None and members.size:
                mean = _unit(np.asarray(vectors[members], dtype=np.float64).mean(axis=0))
            means[category] = neutral if mean is None else mean
        out[k] = means[category]
    return out


def trained(cold: set[int], examples: Examples) -> set[int]:
    """The rows of ``cold`` that ``examples`` name as a label or in a history (padding -1
    is never a row): fitting them gives those rows a gradient step from their feedback."""
    if not cold or not len(examples):
        return set()
    rows = np.fromiter(cold, dtype=np.int64, count=len(cold))
    named = examples.items.ravel()
    named = np.concatenate([examples.labels, named[named >= 0]]).astype(np.int64)
    touched = np.zeros(int(max(rows.max(), named.max(initial=-1))) + 1, dtype=bool)
    touched[named] = True  # one pass over the examples, however many rows are cold
    return {int(r) for r in rows[touched[rows]]}
