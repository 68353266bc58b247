"""Keeping a large catalog's IVF index across rounds instead of retraining it.

A round moves only the item rows it touched (the Adagrad update is row-sparse), so the next
version's index is the previous one with those rows removed and re-added under the same ids
(= rows). The coarse quantizer stays the one trained at bootstrap: vectors drift slowly, and
a fresh ``veto bootstrap`` retrains it. Training a 1M-item IVF takes ~10 s on 2 cores; this
takes a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def refresh_index(index: Any, old: np.ndarray, new: np.ndarray) -> int:
    """Update ``index`` (ids = rows of ``old``) in place to hold ``new`` (N, D) unit rows.

    Returns the number of rows that changed.
    """
    if old.shape != new.shape or index.ntotal != new.shape[0]:
        raise ValueError(f"index of {index.ntotal} rows cannot follow {old.shape} -> {new.shape}")
    changed = np.flatnonzero(np.any(old != new, axis=1)).astype(np.int64)  # (M,)
    if changed.size:
        index.remove_ids(changed)
        index.add_with_ids(np.ascontiguousarray(new[changed], dtype=np.float32), changed)
    return int(changed.size)
