"""The model the service serves: one immutable snapshot behind one reference.

Hot-swap invariants:
  * ``ModelHolder.current`` is replaced, never mutated; a request reads it once and uses
    that snapshot until it answers, so in-flight requests finish on the version they began on.
  * A snapshot is only built from a version that passed ``veto.artifacts.load_version``
    (every serving file checked against the manifest's sha256); a failed load leaves the
    reference untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from veto.artifacts import ModelVersion

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class ServingModel:
    """A loaded version plus the lookups the request path needs, built once at load."""

    version: ModelVersion
    category_rows: dict[str, I64]  # category -> item rows (R,)
    category_codes: I32  # (N,) one code per category, -1 = no category
    popular_rows: tuple[int, ...]  # rows of the version's popular items, most popular first
    search_cost: int = 0  # item vectors one index search compares against (flat: N)
    # (N,) False for the rows the catalog withholds (hidden, deleted): never served, whatever
    # the version says. None: all servable. Set by service.catalog_mirror, per catalog state.
    servable: npt.NDArray[np.bool_] | None = None

    @property
    def number(self) -> int:
        return self.version.version

    def rows_of(self, item_ids: frozenset[str] | set[str] | list[str]) -> I64:
        """Rows of the ids known to this version (unknown ids are skipped)."""
        rows = self.version.item_ids.rows(list(item_ids))  # (X,), -1 = unknown
        found: I64 = rows[rows >= 0]
        return found


def build_serving_model(
    version: ModelVersion, *, previous: ServingModel | None = None
) -> ServingModel:
    """Precompute the category lookups of the category filter (or take ``previous``'s when
    the version shares its category list) and the popular fallback's rows."""
    popular_rows = tuple(version.item_ids.rows(version.popular).tolist())
    if previous is not None and previous.version.categories is version.categories:
        return ServingModel(
            version=version,
            category_rows=previous.category_rows,
            category_codes=previous.category_codes,
            popular_rows=popular_rows,
            search_cost=_search_cost(version),
        )
    return ServingModel(
        version=version,
        category_rows=version.categories.rows_by_name(),
        category_codes=version.categories.codes,
        popular_rows=popular_rows,
        search_cost=_search_cost(version),
    )


def _search_cost(version: ModelVersion) -> int:
    """Vectors compared per query: all N for a flat catalog, the coarse centroids plus the
    probed lists (on average) for IVF."""
    n = version.manifest.n_items
    if version.index is None or version.manifest.index_type != "ivf":
        return n
    nlist = int(faiss.extract_index_ivf(version.index).nlist)
    return nlist + version.manifest.nprobe * -(-n // max(nlist, 1))


class ModelHolder:
    """Holds the current ``ServingModel`` (or None before the first load)."""

    def __init__(self) -> None:
        self._current: ServingModel | None = None

    @property
    def current(self) -> ServingModel | None:
        return self._current

    def swap(self, model: ServingModel) -> ServingModel | None:
        """Make ``model`` current and return the one it replaced."""
        previous, self._current = self._current, model
        return previous
