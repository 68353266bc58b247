"""Pure ranking functions over arrays: no I/O, no model state.

Legend: M candidates returned by a search, N items in the catalog, D dim.
FAISS results are named ``scores, ids``; an id of ``-1`` means "no result in this slot".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def fetch_size(k: int, *, n_blocked: int, margin: int, n_items: int) -> int:
    """How many candidates to ask the index for so that k survive the filters."""
    return max(1, min(n_items, k + n_blocked + margin))


def select_top_k(
    scores: F32,
    ids: I64,
    *,
    k: int,
    blocked: I64,
    allowed: Bool | None = None,
) -> tuple[I64, F32]:
    """Best ``k`` candidates, highest score first (ties by row), without blocked rows.

    scores, ids (M,) from a search; blocked (B,) item rows never to return; allowed (M,)
    optional mask of the candidates that may be returned (a category filter). Drops ``-1``
    ids and repeated ids. Returns (rows, scores), each of length <= k.
    """
    keep = ids >= 0  # (M,)
    if blocked.size:
        # A set lookup per candidate beats np.isin's sorts for the few dozen candidates of a
        # request; np.isin for the large arrays of a category scan.
        if ids.size <= 256:
            block = set(blocked.tolist())
            keep &= np.fromiter((i not in block for i in ids.tolist()), dtype=bool, count=ids.size)
        else:
            keep &= ~np.isin(ids, blocked)
    if allowed is not None:
        keep &= allowed
    rows, vals = ids[keep], scores[keep]
    if rows.size == 0 or k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    order = np.lexsort((rows, -vals))  # score descending, then row ascending
    rows, vals = rows[order], vals[order]
    # Keep the first (best) occurrence of each row.
    _, first = np.unique(rows, return_index=True)
    first.sort()
    rows, vals = rows[first][:k], vals[first][:k]
    return rows.astype(np.int64), vals.astype(np.float32)


def scan_rows(vectors: F32, rows: I64, query: F32) -> tuple[F32, I64]:
    """Exact inner-product scores of ``query`` (D,) against ``rows`` (R,) of ``vectors``
    (N, D): the search used when a category filter leaves too few index candidates."""
    scores = (np.asarray(vectors[rows]) @ query).astype(np.float32)  # (R,)
    return scores, rows.astype(np.int64)
