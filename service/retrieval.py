"""Top-K retrieval over one model snapshot: user vector, FAISS search with over-fetch, the
serving-time adjustment (``veto.ranking``: item prior, dislike penalty) and filters, the
category scan, the popular fallback. Synchronous and CPU-bound: callers run it in a thread.
Legend: N items, D dim, M candidates, X the user's disliked items.

The evaluation adjusts every item's score; here only the fetched candidates are adjusted,
so an item outside the over-fetch cannot climb into the top k (``overfetch`` sets the room).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.errors import FieldError, invalid_fields
from service.model_holder import ServingModel
from service.ranking import fetch_size, scan_rows, select_top_k
from veto.events import N_EVENT_TYPES
from veto.ranking import OFF, Strengths, adjust_scores

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def servable(model: ServingModel, ids: I64) -> npt.NDArray[np.bool_] | None:
    """(M,) which candidate rows ``ids`` (M,) the catalog lets us serve (``-1`` slots are
    dropped anyway); None when it withholds nothing. Rows it withholds are filtered like the
    blocked ones, but from one per-version mask: no per-request set of them, and the fetch is
    widened only when they really took a place."""
    if model.servable is None:
        return None
    mask: npt.NDArray[np.bool_] = model.servable[np.maximum(ids, 0)]
    return mask


@dataclass(frozen=True)
class Ranked:
    """Rows of the chosen items, best first, and their scores."""

    rows: I64  # (K,)
    scores: F32  # (K,)


def history_rows(model: ServingModel, history: Iterable[str]) -> tuple[list[int], list[int]]:
    """The encoder's input from a history as Redis keeps it (``HistoryEntry.encode()``
    strings, newest first): item rows and type codes, skipping items this version does not
    know and withdrawn decisions, at most the encoder's history length. Parsed in this one
    pass rather than through ``HistoryEntry.decode``: no object per entry on the request
    path."""
    item_ids: list[str] = []
    codes: list[int] = []
    for entry in history:
        type_code, item_id, _ = entry.split("|", 2)
        code = int(type_code)
        if code < N_EVENT_TYPES:  # a withdrawn like or dislike (code 4) is no input: neutral
            item_ids.append(item_id)
            codes.append(code)
    limit = model.version.encoder.history_len
    found = model.version.item_ids.rows(item_ids).tolist()  # one lookup for the history
    pairs = [(row, code) for row, code in zip(found, codes, strict=True) if row >= 0]
    return [row for row, _ in pairs[:limit]], [code for _, code in pairs[:limit]]


def has_signal(model: ServingModel, user_id: str, rows: list[int]) -> bool:
    """Whether there is anything to personalise on: a history item this version knows or a
    learned embedding of the user. Without either, the answer is the popular fallback."""
    return bool(rows) or user_id in model.version.encoder.user_index


def user_vectors(model: ServingModel, queries: Sequence[Query]) -> F32:
    """The user states (B, D) of a batch, from each query's ``history_rows``."""
    return model.version.encoder.encode_many(
        model.version.vectors,
        [q.rows for q in queries],
        [q.types for q in queries],
        [q.user_id for q in queries],
    )


def category_rows(model: ServingModel, category: str | None) -> I64 | None:
    """Rows of a category filter (None = no filter); InvalidInput for an unknown category."""
    if category is None:
        return None
    rows = model.category_rows.get(category)
    if rows is None:
        error = FieldError(
            location="query",
            index=None,
            field="category",
            message="not a category of the current catalog",
        )
        raise invalid_fields(
            f"unknown category {category[:40]!r} in model version {model.number}", [error]
        )
    return rows


@dataclass(frozen=True)
class Adjustment:
    """One user's input to the serving-time adjustment: their disliked rows and the strengths.
    The default adjusts nothing."""

    disliked: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # (X,)
    strengths: Strengths = OFF


NO_ADJUSTMENT = Adjustment()


def adjusted(model: ServingModel, scores: F32, ids: I64, adjustment: Adjustment) -> F32:
    """(M,) ``scores`` of candidate rows ``ids`` (M,) after ``veto.ranking.adjust_scores``."""
    out: F32 = adjusted_many(
        model, scores[None, :], ids[None, :], [adjustment.disliked], adjustment.strengths
    )[0]
    return out


def adjusted_many(
    model: ServingModel, scores: F32, ids: I64, disliked: Sequence[I64], strengths: Strengths
) -> F32:
    """(B, M) ``scores`` of candidate rows ``ids`` (B, M) after ``veto.ranking.adjust_scores``,
    with each user's disliked rows (X,)."""
    if not (strengths.prior_weight or strengths.dislike_penalty):
        return scores
    return adjust_scores(
        scores,
        ids,
        item_vectors=model.version.vectors,
        prior=model.version.item_prior,
        disliked=disliked,
        strengths=strengths,
    )


def search(
    model: ServingModel,
    vector: F32,
    *,
    k: int,
    blocked: I64,
    overfetch: int,
    adjustment: Adjustment = NO_ADJUSTMENT,
) -> Ranked:
    """Best k rows for ``vector`` not in ``blocked``: FAISS with over-fetch, the candidates'
    scores adjusted, widened until k survive the filter or the whole catalog was asked for."""
    n_items = model.version.manifest.n_items
    fetch = fetch_size(k, n_blocked=int(blocked.size), margin=overfetch, n_items=n_items)
    query = np.ascontiguousarray(vector[None, :], dtype=np.float32)  # (1, D)
    while True:
        scores, ids = model.version.nearest(query, fetch)  # (1, M) each
        rows = ids[0].astype(np.int64)  # (M,)
        vals = adjusted(model, scores[0], rows, adjustment)
        top, top_vals = select_top_k(
            vals, rows, k=k, blocked=blocked, allowed=servable(model, rows)
        )
        if top.size >= k or fetch >= n_items:
            return Ranked(top, top_vals)
        fetch = min(n_items, fetch * 4)


def scan(
    model: ServingModel,
    vector: F32,
    *,
    k: int,
    blocked: I64,
    rows: I64,
    adjustment: Adjustment = NO_ADJUSTMENT,
) -> Ranked:
    """Best k of ``rows`` (a category) for ``vector``, exactly, without ``blocked``."""
    scores, ids = scan_rows(model.version.vectors, rows, vector)
    vals = adjusted(model, scores, ids, adjustment)
    top, vals = select_top_k(vals, ids, k=k, blocked=blocked, allowed=servable(model, ids))
    return Ranked(top, vals)


def rank(
    model: ServingModel,
    vector: F32,
    *,
    k: int,
    blocked: I64,
    allowed: I64 | None,
    overfetch: int,
    adjustment: Adjustment = NO_ADJUSTMENT,
) -> Ranked:
    """Personalised top-k: a scan of the allowed rows when a category is given, else FAISS;
    either way the scores adjusted by ``adjustment``."""
    if allowed is not None:
        return scan(model, vector, k=k, blocked=blocked, rows=allowed, adjustment=adjustment)
    return search(model, vector, k=k, blocked=blocked, overfetch=overfetch, adjustment=adjustment)


@dataclass(frozen=True)
class Query:
    """One user's personalised request in a batch: the encoder's input (``history_rows``) and
    the request's own filters."""

    user_id: str
    rows: list[int]
    types: list[int]
    k: int
    blocked: I64  # (X,) rows never to return
    allowed: I64 | None  # (R,) a category's rows, or None for the whole catalog
    disliked: I64  # (X,) the dislike penalty's rows


def rank_many(
    model: ServingModel, queries: Sequence[Query], *, overfetch: int, strengths: Strengths
) -> list[Ranked]:
    """``rank`` for each query, in order, with the user states encoded together and one index
    search over every query without a category (those scan their category alone)."""
    vectors = user_vectors(model, queries)  # (B, D)
    found: dict[int, Ranked] = {}
    searched: list[int] = []
    for b, q in enumerate(queries):
        if q.allowed is None:
            searched.append(b)
            continue
        adjustment = Adjustment(q.disliked, strengths)
        found[b] = scan(
            model, vectors[b], k=q.k, blocked=q.blocked, rows=q.allowed, adjustment=adjustment
        )
    if searched:
        chosen = [queries[b] for b in searched]
        ranked = search_many(
            model, vectors[searched], chosen, overfetch=overfetch, strengths=strengths
        )
        found.update(zip(searched, ranked, strict=True))
    return [found[b] for b in range(len(queries))]


def search_many(
    model: ServingModel,
    vectors: F32,
    queries: Sequence[Query],
    *,
    overfetch: int,
    strengths: Strengths,
) -> list[Ranked]:
    """``search`` for B user states ``vectors`` (B, D) at once: one index search of the
    largest fetch, each user cut back to their own fetch so that the adjustment reorders the
    same candidates a search of their own would have fetched. A user whose filters leave
    fewer than k is widened alone (``search``)."""
    n_items = model.version.manifest.n_items
    fetch = np.asarray(
        [
            fetch_size(q.k, n_blocked=int(q.blocked.size), margin=overfetch, n_items=n_items)
            for q in queries
        ],
        dtype=np.int64,
    )  # (B,)
    queries_2d = np.ascontiguousarray(vectors, dtype=np.float32)  # (B, D)
    scores, ids = model.version.nearest(queries_2d, int(fetch.max()))  # (B, M) each
    own = np.arange(ids.shape[1])[None, :] < fetch[:, None]  # (B, M)
    ids = np.where(own, ids, -1).astype(np.int64)
    vals = adjusted_many(model, scores, ids, [q.disliked for q in queries], strengths)  # (B, M)
    out: list[Ranked] = []
    for b, q in enumerate(queries):
        top, top_vals = select_top_k(
            vals[b], ids[b], k=q.k, blocked=q.blocked, allowed=servable(model, ids[b])
        )
        if top.size < q.k and fetch[b] < n_items:
            adjustment = Adjustment(q.disliked, strengths)
            widened = search(
                model,
                vectors[b],
                k=q.k,
                blocked=q.blocked,
                overfetch=overfetch,
                adjustment=adjustment,
            )
            out.append(widened)
        else:
            out.append(Ranked(top, top_vals))
    return out


def fallback(
    model: ServingModel,
    popular: Iterable[tuple[str, float]],
    *,
    k: int,
    blocked: I64,
    allowed: I64 | None,
) -> Ranked:
    """Most-liked items recently (score = recent likes), then the version's own popular
    list (score 0), then, if still short, the rest of the allowed rows: never empty-handed."""
    blocked_set = set(blocked.tolist())
    allowed_set = None if allowed is None else set(allowed.tolist())
    withheld = model.servable
    seen: set[int] = set()
    rows: list[int] = []
    scores: list[float] = []

    def offer(row: int, score: float) -> None:
        if (
            row in seen
            or row in blocked_set
            or (allowed_set is not None and row not in allowed_set)
            or (withheld is not None and not withheld[row])
        ):
            return
        seen.add(row)
        rows.append(row)
        scores.append(score)

    recent = list(popular)
    for row, (_, likes) in zip(
        model.version.item_ids.rows([item_id for item_id, _ in recent]).tolist(),
        recent,
        strict=True,
    ):
        if row >= 0:
            offer(row, likes)
        if len(rows) >= k:
            break
    for row in model.popular_rows:
        if len(rows) >= k:
            break
        offer(row, 0.0)
    if len(rows) < k:
        # Enough of the pool's first rows to fill k past those blocked or already offered.
        limit = k + len(blocked_set) + len(seen)
        if withheld is not None:
            limit += int(withheld.size - np.count_nonzero(withheld))
        n_items = model.version.manifest.n_items
        pool = allowed[:limit].tolist() if allowed is not None else range(min(limit, n_items))
        for row in pool:
            if len(rows) >= k:
                break
            offer(int(row), 0.0)
    return Ranked(np.asarray(rows[:k], dtype=np.int64), np.asarray(scores[:k], dtype=np.float32))


def top_rows(model: ServingModel, vector: F32, k: int) -> I64:
    """Unfiltered top-k rows (K,) of a user state: what the model itself prefers."""
    query = np.ascontiguousarray(vector[None, :], dtype=np.float32)  # (1, D)
    _, ids = model.version.nearest(query, k)  # (1, K) each
    found: I64 = ids[0][ids[0] >= 0]
    return found
