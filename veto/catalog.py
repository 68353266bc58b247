"""A version's catalog in compact arrays: item ids by row with their reverse lookup, and item
categories as codes.

At 1M items a list of ``str`` ids plus a dict id -> row and a list of category strings cost
the service ~190 MiB of RSS (a Python object per id, per row number and per category); these
arrays take ~17 MiB: the ids as fixed-width UTF-8 bytes (N,) with their argsort (N,) for
lookups, the categories as int32 codes (N,). Legend: N items, Q looked-up ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


class ItemIds:
    """Item ids by row (``ids[row]``), and rows by id (``ids.get(item)``, ``ids.rows(items)``,
    ``item in ids``). Ids must be unique and must not end in a NUL byte (fixed-width bytes
    drop them; ``veto.ids`` never allows one)."""

    __slots__ = ("_ids", "_order", "_sorted")

    def __init__(self, ids: Sequence[str]) -> None:
        encoded = [item.encode() for item in ids]
        self._ids = np.array(encoded, dtype=bytes) if encoded else np.empty(0, dtype="S1")  # (N,)
        self._order: I64 = np.argsort(self._ids, kind="stable").astype(np.int64)  # (N,)
        # Sorted keys: np.searchsorted with ``sorter=`` gathers through the order on every
        # probe and was ~5x slower for a request's 100 history ids.
        self._sorted = self._ids[self._order]  # (N,)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __getitem__(self, row: int) -> str:
        value: bytes = self._ids[row].item()
        return value.decode()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self.get(item) is not None

    def tolist(self) -> list[str]:
        """All ids, row order."""
        return self.names(np.arange(len(self)))

    def names(self, rows: Iterable[int] | I64) -> list[str]:
        """The ids of ``rows``."""
        picked = self._ids[np.asarray(rows, dtype=np.int64)]
        return [value.decode() for value in picked.tolist()]

    def get(self, item: str) -> int | None:
        """The row of ``item``; None if this catalog does not have it."""
        row = int(self.rows([item])[0])
        return None if row < 0 else row

    def rows(self, items: Sequence[str]) -> I64:
        """Rows (Q,) of ``items``, -1 for an id this catalog does not have."""
        n = len(self)
        if not items or n == 0:
            return np.full(len(items), -1, dtype=np.int64)
        encoded = [item.encode() for item in items]
        width = self._sorted.dtype.itemsize
        # A key longer than the table's width would be truncated to it for the search: it
        # cannot be in the table, so it is marked -1 rather than looked up.
        keys = np.array(encoded, dtype=self._sorted.dtype)  # (Q,)
        pos = np.minimum(np.searchsorted(self._sorted, keys), n - 1)  # (Q,)
        found = self._sorted[pos] == keys  # (Q,)
        if max(map(len, encoded)) > width:
            found &= np.fromiter((len(e) <= width for e in encoded), dtype=bool, count=len(keys))
        return np.where(found, self._order[pos], -1).astype(np.int64)


class Categories:
    """The category of each row as a code (``codes``, -1 = none) into ``names``."""

    __slots__ = ("codes", "names")

    def __init__(self, categories: Sequence[str | None]) -> None:
        index: dict[str, int] = {}
        self.codes: I32 = np.fromiter(
            (-1 if c is None else index.setdefault(c, len(index)) for c in categories),
            dtype=np.int32,
            count=len(categories),
        )  # (N,)
        self.names: tuple[str, ...] = tuple(index)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, row: int) -> str | None:
        code = int(self.codes[row])
        return None if code < 0 else self.names[code]

    def tolist(self) -> list[str | None]:
        """The category of every row (None = none), row order."""
        names = [*self.names, None]  # code -1 picks the trailing None
        return [names[c] for c in self.codes.tolist()]

    def rows_by_name(self) -> dict[str, I64]:
        """Rows (R,) of each category, ascending."""
        order = np.argsort(self.codes, kind="stable")  # (N,)
        bounds = np.searchsorted(self.codes[order], np.arange(len(self.names) + 1))
        return {
            name: order[bounds[c] : bounds[c + 1]].astype(np.int64)
            for c, name in enumerate(self.names)
        }
