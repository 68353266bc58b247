"""This process's copy of the catalog's serving state (which items are withheld, which have a
catalog category) and the served model with it applied.

How a hide reaches every replica on its next request: a catalog write bumps the generation
in Redis (``veto.items``). Every recommendation batch reads that generation in the same
pipeline as its users' state (``FeedbackStore.read_batch``: one GET more in a round trip it
makes anyway); ``similar`` reads it alone. When it moved, ``refresh`` replays the log entries
after the last one applied (one more round trip, only after a write), or reloads the whole
state when the log was trimmed past it, at start, or after Redis lost data. ``serving`` then
gives the model with a per-version row mask (``ServingModel.servable``, applied by ranking
like the other exclusions) and the catalog's categories over the version's, both cached
until the next change (or a version with other items or categories).

Redis down: the last state applied keeps being served (a hidden item stays hidden), as the
user state falls back to what the model alone knows; a process that never reached Redis
knows no withheld item yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import numpy as np
import numpy.typing as npt

from service.catalog_store import CatalogStore, Changes, Snapshot
from service.model_holder import ServingModel
from veto import items
from veto.catalog import Categories, ItemIds
from veto.errors import StoreUnavailable

log = logging.getLogger(__name__)
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
# Log entries replayed at most per refresh; more behind than this, the whole state is read.
REPLAY_LIMIT = 10_000
_NEVER = -1


def _entry(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class CatalogMirror:
    """The catalog's withheld items and categories, kept up to date by ``refresh``."""

    def __init__(self, store: CatalogStore, *, replay_limit: int = REPLAY_LIMIT) -> None:
        self._store = store
        self._limit = replay_limit
        self._generation = _NEVER
        self._last_id = "0-0"
        self.withheld: dict[str, str] = {}  # item -> veto.items HIDDEN | DELETED
        self.categories: dict[str, str] = {}  # item -> its catalog category
        # Bumped when the part changes: what ``serving`` caches its derived arrays by.
        self._revisions = (0, 0)
        self._lock = asyncio.Lock()
        self._cached: tuple[ServingModel, tuple[int, int], ServingModel] | None = None
        self._mask: tuple[ItemIds, int, npt.NDArray[np.bool_] | None] | None = None
        self._category_lookups: tuple[ItemIds, Categories, int, dict[str, I64], I32] | None = None

    @property
    def generation(self) -> int | None:
        """The generation applied; None before the first load."""
        return None if self._generation == _NEVER else self._generation

    async def refresh(self, generation: int | None) -> None:
        """Catch up with the catalog when it is at another ``generation`` than the one applied
        (None: unknown, Redis is down). Never raises for Redis: the last state stays."""
        if generation is None or generation == self._generation:
            return
        async with self._lock:  # one catch-up at a time; the others find it done
            if generation == self._generation:
                return
            try:
                await self._catch_up()
            except StoreUnavailable as exc:
                log.debug("catalog refresh failed, serving the last state: %s", exc)

    async def refresh_now(self) -> None:
        """``refresh`` to whatever generation Redis has (one GET more): for the routes that
        do not read user state. Redis down: the last state stays."""
        try:
            generation = await self._store.generation()
        except StoreUnavailable:
            return
        await self.refresh(generation)

    async def _catch_up(self) -> None:
        if self._generation != _NEVER:
            changes = await self._store.changes(self._last_id, limit=self._limit + 1)
            if self._can_replay(changes):
                self._replay(changes)
                return
        self._load(await self._store.snapshot())

    def _can_replay(self, changes: Changes) -> bool:
        """Whether the entries read are all that happened since the last one applied."""
        if changes.generation < self._generation or len(changes.entries) > self._limit:
            return False  # Redis lost data (restart, flush), or too far behind
        if changes.oldest is not None and self._last_id != "0-0":
            # The last entry applied was trimmed away: entries after it may be gone too.
            return _entry(changes.oldest) <= _entry(self._last_id)
        return True

    def _replay(self, changes: Changes) -> None:
        withheld_rev, categories_rev = self._revisions
        for entry_id, change in changes.entries:
            item = change.item_id
            state = change.state if change.state in (items.HIDDEN, items.DELETED) else None
            if self.withheld.get(item) != state:
                withheld_rev += 1
                if state is None:
                    self.withheld.pop(item, None)
                else:
                    self.withheld[item] = state
            if self.categories.get(item) != change.category:
                categories_rev += 1
                if change.category is None:
                    self.categories.pop(item, None)
                else:
                    self.categories[item] = change.category
            self._last_id = entry_id
        self._revisions = (withheld_rev, categories_rev)
        self._generation = changes.generation

    def _load(self, snapshot: Snapshot) -> None:
        self.withheld = snapshot.withheld
        self.categories = snapshot.categories
        self._revisions = (self._revisions[0] + 1, self._revisions[1] + 1)
        self._last_id = snapshot.last_id
        self._generation = snapshot.generation
        log.info(
            "catalog state loaded: generation %d, %d withheld, %d categorised items",
            snapshot.generation,
            len(snapshot.withheld),
            len(snapshot.categories),
        )

    def serving(self, model: ServingModel) -> ServingModel:
        """``model`` with the catalog applied: withheld rows masked out, the catalog's
        categories over the version's; ``model`` itself when the catalog changes nothing.
        The mask and the category lookups are kept per (item ids, categories, catalog state):
        a new version that shares its item ids and categories with the last one (a fine-tuning
        round) reuses them, so a swap costs no rebuild on the request path."""
        withheld_rev, categories_rev = self._revisions
        version = model.version
        mask = self._mask
        if mask is None or mask[0] is not version.item_ids or mask[1] != withheld_rev:
            mask = self._mask = (version.item_ids, withheld_rev, _servable(model, self.withheld))
        cats = self._category_lookups
        if (
            cats is None
            or cats[0] is not version.item_ids
            or cats[1] is not version.categories
            or cats[2] != categories_rev
        ):
            rows, codes = _categories(model, self.categories)
            cats = self._category_lookups = (
                version.item_ids,
                version.categories,
                categories_rev,
                rows,
                codes,
            )
        servable, category_rows, codes = mask[2], cats[3], cats[4]
        if servable is None and codes is model.category_codes:
            return model
        cached = self._cached
        if cached is not None and cached[0] is model and cached[1] == self._revisions:
            return cached[2]
        applied = dataclasses.replace(
            model, servable=servable, category_rows=category_rows, category_codes=codes
        )
        self._cached = (model, self._revisions, applied)
        return applied


def _servable(model: ServingModel, withheld: dict[str, str]) -> npt.NDArray[np.bool_] | None:
    """(N,) False for the version's withheld rows; None when none of them is withheld."""
    if not withheld:
        return None
    rows = model.version.item_ids.rows(list(withheld))  # (W,), -1 = not in this version
    rows = rows[rows >= 0]
    if not rows.size:
        return None
    mask = np.ones(model.version.manifest.n_items, dtype=bool)  # (N,)
    mask[rows] = False
    return mask


def _categories(model: ServingModel, categories: dict[str, str]) -> tuple[dict[str, I64], I32]:
    """The category lookups with the catalog's category of each item the version has (the
    version's own for the others); the model's own arrays when they agree."""
    if not categories:
        return model.category_rows, model.category_codes
    rows = model.version.item_ids.rows(list(categories))  # (C,), -1 = not in this version
    index = {name: code for code, name in enumerate(model.version.categories.names)}
    wanted = np.fromiter(
        (index.setdefault(c, len(index)) for c in categories.values()),
        dtype=np.int32,
        count=len(categories),
    )  # (C,)
    known = rows >= 0
    rows, wanted = rows[known], wanted[known]
    if np.array_equal(model.category_codes[rows], wanted):
        return model.category_rows, model.category_codes
    codes = model.category_codes.copy()  # (N,)
    codes[rows] = wanted
    order = np.argsort(codes, kind="stable")  # (N,)
    bounds = np.searchsorted(codes[order], np.arange(len(index) + 1))
    by_name = {name: order[bounds[c] : bounds[c + 1]].astype(np.int64) for name, c in index.items()}
    return by_name, codes
