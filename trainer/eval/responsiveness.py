"""The NTR paper's offline responsiveness simulation (Wang et al. 2023, §4).

Legend: S simulated users in a chunk, L history length, N items, D dim, K top-K.

Protocol, per simulated user:
1. Start from a history: the earliest ``start_events`` training events of a randomly drawn
   real user (0 = an empty history, a brand-new user). Simulated users are anonymous: no
   per-user embedding is used, only the history, as the service does for a new user.
2. Walk ``steps`` (k) steps: at each step rank the catalog with the encoder over the current
   history, items already in it masked (the service drops seen items), pick one of the top-K
   uniformly at random (seeded) and append it as a like.
3. At step k the picked item x is appended in both branches: as a like in branch A, as a
   dislike in branch B (the paper's counterfactual: the same interaction with and without
   the dislike feature, replaced, not a second event added). The top-K at step k+1 of each
   branch is compared:
   - similar share = share of the top-K (x itself left out) similar to x
     (``trainer.eval.similarity``: category sets overlapping, or the same k-means cluster);
   - responsiveness = (share_B − share_A) / share_A over the mean shares (−0.608 = −60.8 %);
   - return rate = share of users whose top-K still contains x itself (x is not masked here,
     so this measures the model, not the service's disliked-item filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from trainer.eval.metrics import Serving
from trainer.eval.similarity import Similarity
from trainer.eval.users import history_arrays
from veto.encoder import UserEncoder
from veto.errors import ConfigError, InvalidInput
from veto.events import EventType, Interaction
from veto.ranking import adjust_scores, penalty_sources

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SimConfig:
    n_users: int = 2_000
    steps: int = 50
    top_k: int = 20
    start_events: int = 10
    seed: int = 0
    chunk_size: int = 256

    def __post_init__(self) -> None:
        for name in ("n_users", "steps", "top_k", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"responsiveness {name} must be >= 1, got {getattr(self, name)}")
        if self.start_events < 0:
            raise ConfigError(f"start_events must be >= 0, got {self.start_events}")


@dataclass(frozen=True)
class Responsiveness:
    """The outcome for one model; ``relative_change`` is the paper's responsiveness."""

    n_users: int
    similar_share_without: float
    similar_share_with: float
    relative_change: float
    return_rate_without: float
    return_rate_with: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def start_histories(
    train: Sequence[Interaction],
    *,
    item_index: dict[str, int],
    n_users: int,
    start_events: int,
    seed: int,
) -> list[list[tuple[int, int]]]:
    """(item row, type) start histories, oldest first: the earliest events of drawn users."""
    if start_events == 0:
        return [[] for _ in range(n_users)]
    earliest: dict[str, list[tuple[int, int]]] = {}
    for e in train:
        events = earliest.setdefault(e.user_id, [])
        if len(events) < start_events:
            events.append((item_index[e.item_id], int(e.type)))
    users = list(earliest)
    if not users:
        raise InvalidInput("no training events to start the simulated users from")
    rng = np.random.default_rng(seed)
    # Drawn with replacement only when there are fewer real users than simulated ones.
    picks = rng.choice(len(users), size=n_users, replace=n_users > len(users))
    return [list(earliest[users[i]]) for i in picks]


def _push(items: I64, types: I64, new_items: I64, new_type: EventType) -> tuple[I64, I64]:
    """Prepend one event per row to newest-first histories, dropping the oldest column."""
    items = np.concatenate([new_items[:, None], items[:, :-1]], axis=1)
    types = np.concatenate([np.full((items.shape[0], 1), int(new_type)), types[:, :-1]], axis=1)
    return items, types


def _scores(
    encoder: UserEncoder,
    vectors: F32,
    items: I64,
    types: I64,
    seen: Bool,
    serving: Serving | None,
) -> F32:
    """(S, N) scores of every item for each history, as served when ``serving`` (the penalty's
    sources taken from the history as the service takes them), seen items at -inf."""
    rows = np.full(items.shape[0], -1, dtype=np.int64)
    states = encoder.encode_batch(vectors, items, types, rows)  # (S, D)
    scores: F32 = states @ vectors.T  # (S, N)
    if serving is not None:
        window = serving.strengths.penalty_window or items.shape[1]
        scores = adjust_scores(
            scores,
            np.arange(vectors.shape[0], dtype=np.int64),
            item_vectors=vectors,
            prior=serving.prior,
            disliked=[penalty_sources(i, t, window) for i, t in zip(items, types, strict=True)],
            strengths=serving.strengths,
        )
    scores[seen] = -np.inf
    return scores


def _top_k_unordered(scores: F32, k: int) -> I64:
    out: I64 = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (S, K)
    return out


def _branch_outcome(
    scores: F32, disliked: I64, similarity: Similarity, k: int
) -> tuple[npt.NDArray[np.float64], Bool]:
    """Per user: similar share of the top-K without x, and whether x is in the top-K."""
    rows = np.arange(scores.shape[0])
    x_score = scores[rows, disliked]  # (S,)
    # x is in the top-K when fewer than K items outscore it (ties count against x).
    returned = (scores > x_score[:, None]).sum(axis=1) < k
    scores = scores.copy()
    scores[rows, disliked] = -np.inf
    top = _top_k_unordered(scores, k)  # (S, K)
    share = similarity.similar(top, disliked).mean(axis=1)
    return share.astype(np.float64), returned


def _simulate_chunk(
    encoder: UserEncoder,
    vectors: F32,
    similarity: Similarity,
    starts: Sequence[Sequence[tuple[int, int]]],
    *,
    config: SimConfig,
    rng: np.random.Generator,
    drop_dislike: bool,
    serving: Serving | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], Bool, Bool]:
    n_users, n_items = len(starts), vectors.shape[0]
    items, types = history_arrays(starts, encoder.history_len)  # (S, L)
    seen = np.zeros((n_users, n_items), dtype=bool)  # every item consumed so far
    for row, events in enumerate(starts):
        seen[row, [i for i, _ in events]] = True
    rows = np.arange(n_users)
    picked = np.zeros(n_users, dtype=np.int64)
    for step in range(config.steps):
        scores = _scores(encoder, vectors, items, types, seen, serving)
        top = _top_k_unordered(scores, config.top_k)
        picked = top[rows, rng.integers(config.top_k, size=n_users)]  # (S,)
        items, types = _push(items, types, picked, EventType.LIKE)
        if step < config.steps - 1:
            seen[rows, picked] = True  # x (the last pick) stays rankable to measure its return
    share_a, back_a = _branch_outcome(
        _scores(encoder, vectors, items, types, seen, serving), picked, similarity, config.top_k
    )
    types_b = types.copy()
    if not drop_dislike:  # without a dislike input the two branches are the same history
        types_b[:, 0] = int(EventType.DISLIKE)  # the newest event, x, now carries the dislike
    share_b, back_b = _branch_outcome(
        _scores(encoder, vectors, items, types_b, seen, serving), picked, similarity, config.top_k
    )
    return share_a, share_b, back_a, back_b


def simulate(
    encoder: UserEncoder,
    item_vectors: F32,
    similarity: Similarity,
    starts: Sequence[Sequence[tuple[int, int]]],
    *,
    config: SimConfig,
    drop_dislike: bool = False,
    serving: Serving | None = None,
) -> Responsiveness:
    """Run the protocol for ``len(starts)`` simulated users and aggregate.

    ``drop_dislike``: the model has no dislike input (ssm-nodislike), so the dislike branch
    cannot differ from the like-only one, and start histories lose their dislikes.
    ``serving``: rank as the service does (``veto.ranking``), for the walk and both branches.
    """
    n_items = item_vectors.shape[0]
    longest = max((len(s) for s in starts), default=0)
    if n_items <= longest + config.steps + config.top_k:
        raise ConfigError(
            f"catalog of {n_items} items too small for {config.steps} steps of top-{config.top_k}"
        )
    if similarity.labels.shape != (n_items,):
        raise ValueError("one similarity label per item is needed")
    if drop_dislike:
        # The model never saw dislikes in its input: neither do its simulated users.
        starts = [[(i, t) for i, t in s if t != EventType.DISLIKE] for s in starts]
    rng = np.random.default_rng(config.seed)
    parts = [
        _simulate_chunk(
            encoder,
            item_vectors,
            similarity,
            starts[i : i + config.chunk_size],
            config=config,
            rng=rng,
            drop_dislike=drop_dislike,
            serving=serving,
        )
        for i in range(0, len(starts), config.chunk_size)
    ]
    share_a = float(np.concatenate([p[0] for p in parts]).mean())
    share_b = float(np.concatenate([p[1] for p in parts]).mean())
    change = (share_b - share_a) / share_a if share_a > 0 else float("nan")
    return Responsiveness(
        n_users=len(starts),
        similar_share_without=share_a,
        similar_share_with=share_b,
        relative_change=change,
        return_rate_without=float(np.concatenate([p[2] for p in parts]).mean()),
        return_rate_with=float(np.concatenate([p[3] for p in parts]).mean()),
    )
