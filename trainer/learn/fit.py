"""Training: a ``Learner`` holds a model with its optimisers between calls; ``fit`` is one
whole training run (``veto bootstrap``, ``veto eval``) built on it.

Reads top to bottom: model, optimisers, epochs of batches, export. Training examples are
built once per call (padded (E, L) history index arrays); a step only gathers rows of them.
Embedding tables get row-wise Adagrad on sparse gradients, the small user tower Adam.
The online trainer keeps one ``Learner`` alive across rounds, so a round neither copies the
(N, D) table out of and back into torch nor rebuilds the optimisers.

Data-parallel (``trainer.learn.parallel``): a learner ``replicate``d on rank 0 sends the other
ranks, before each ``train``, either itself (the first time) or the changes made to it since
(new items, users, erased users: the same calls with the same arguments), and the examples;
``follow`` is the other ranks' side. Every rank then trains its shard of each batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm  # type: ignore[import-untyped]

from trainer.learn.checkpoint import Checkpoint
from trainer.learn.config import TrainConfig
from trainer.learn.examples import Examples, make_examples
from trainer.learn.frequency import FrequencyEstimator
from trainer.learn.model import VetoModel
from trainer.learn.optim import RowWiseAdagrad
from trainer.learn.parallel import DataParallel, Diverged, Plan, Shard
from trainer.learn.step import Batch, LossParts, Objective, batch_loss
from veto.encoder import UserEncoder
from veto.errors import ConfigError, GroupLost
from veto.events import N_EVENT_TYPES, EventType, Interaction

log = logging.getLogger("veto.trainer")
# The Learner methods rank 0's changes may name (``Plan.changes``).
_REPLAYED = ("add_items", "add_users", "forget_users")


@dataclass
class FitResult:
    """What a fit exports: serving arrays, the loss log and the warm-start checkpoint."""

    vectors: np.ndarray  # (N, D) float32 item vectors, unit rows, aligned with item_ids
    encoder: UserEncoder
    loss_history: list[dict[str, float]]  # one dict per epoch
    checkpoint: Checkpoint | None = None  # None: a version written without one


def catalog_digest(item_ids: Sequence[str]) -> str:
    """A fingerprint of the catalog: warm starts need the same rows in the same order."""
    # Ids cannot contain a newline (veto.ids), so the joined text identifies the list.
    return hashlib.sha256("\n".join(item_ids).encode()).hexdigest()


def _batch(examples: Examples, rows: npt.NDArray[np.int64], weights: torch.Tensor) -> Batch:
    part = examples.take(rows)
    kinds = torch.from_numpy(part.kinds).long()
    # Histories are newest first and padded at the end: drop columns no row uses.
    length = max(1, int((part.items >= 0).sum(axis=1).max(initial=0)))
    return Batch(
        items=torch.from_numpy(part.items[:, :length]).long(),
        types=torch.from_numpy(part.types[:, :length]).long(),
        labels=torch.from_numpy(part.labels).long(),
        kinds=kinds,
        users=torch.from_numpy(part.users).long(),
        weights=weights[kinds],
    )


def _type_weights(config: TrainConfig) -> torch.Tensor:
    """Per label type: like 1, dislike w (NTR), click ``click_weight``, skip 0."""
    w = torch.zeros(N_EVENT_TYPES)
    w[EventType.LIKE] = 1.0
    w[EventType.DISLIKE] = config.ntr_weight
    w[EventType.CLICK] = config.click_weight
    return w


class Learner:
    """A model, its optimisers and its frequency estimate, for one catalog (item rows)."""

    def __init__(self, *, item_ids: Sequence[str], config: TrainConfig, warm: bool) -> None:
        if not item_ids:
            raise ConfigError("the catalog is empty")
        self.item_ids = list(item_ids)
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        if len(self.item_index) != len(self.item_ids):
            raise ConfigError("item ids must be unique")
        self.digest = catalog_digest(self.item_ids)
        self.config = config
        self.user_ids: list[str] = []
        self.step = 0
        torch.manual_seed(config.seed)
        n = len(self.item_ids)
        self.model = VetoModel(
            n_items=n,
            n_users=0,
            dim=config.dim,
            history_len=config.history_len,
            dislike_channel=config.dislike_channel,
        )
        if not warm:  # a warm start overwrites them: skip a pass over a large table
            with torch.no_grad():
                self.model.item_emb.weight.normal_(0.0, config.dim**-0.5)
        initial = UserEncoder.initial(
            dim=config.dim, history_len=config.history_len, n_types=N_EVENT_TYPES, seed=config.seed
        )
        self.model.load_encoder(
            replace(initial, dislike_w=np.full(config.dim, -config.dislike_init, np.float32))
        )
        self.sparse = RowWiseAdagrad(self.model.sparse_parameters(), lr=config.emb_lr)
        self.dense = torch.optim.Adam(self.model.dense_parameters(), lr=config.lr)
        self.freq = FrequencyEstimator(n_items=n, alpha=config.freq_alpha)
        # Data-parallel (module docstring): the group, rank 0's changes not yet sent, the DDP
        # module, and a name for this learner that its copies on the other ranks share.
        self.parallel: DataParallel | None = None
        self._changes: list[tuple[str, tuple[Any, ...]]] = []
        self._objective: torch.nn.Module | None = None
        self.uid = uuid.uuid4().hex

    def __getstate__(self) -> dict[str, Any]:
        """What another rank receives: everything but this process's group."""
        return {**self.__dict__, "parallel": None, "_changes": [], "_objective": None}

    def replicate(self, parallel: DataParallel) -> None:
        """Train as one rank of ``parallel`` from now on."""
        self.parallel = parallel
        self._objective = None

    def _record(self, method: str, *args: Any) -> None:
        """Rank 0: a change the other ranks make too before the next ``train``."""
        if self.parallel is not None and self.parallel.leader:
            self._changes.append((method, args))

    @classmethod
    def warm(cls, init: FitResult, *, item_ids: Sequence[str], config: TrainConfig) -> Learner:
        """A learner continuing ``init``: its item rows (raw scale from the checkpoint's norms),
        tower and users, and, with a checkpoint, its optimiser and frequency state."""
        learner = cls(item_ids=item_ids, config=config, warm=True)
        n, dim = len(learner.item_ids), config.dim
        ckpt = init.checkpoint
        if ckpt is not None and ckpt.catalog != learner.digest:
            raise ConfigError("the warm start was trained on a different catalog")
        if init.vectors.shape != (n, dim):
            raise ConfigError(f"warm start has vectors {init.vectors.shape}, expected {(n, dim)}")
        encoder = init.encoder
        if encoder.dim != dim or encoder.history_len != config.history_len:
            raise ConfigError(
                f"warm start encoder is dim {encoder.dim} / L {encoder.history_len}, "
                f"config is dim {dim} / L {config.history_len}"
            )
        model = learner.model
        with torch.no_grad():
            vectors = torch.from_numpy(np.asarray(init.vectors, np.float32))  # (N, D)
            if ckpt is not None and ckpt.item_norms.shape == (n,):
                vectors = vectors * ckpt.item_norms.unsqueeze(1)
            model.item_emb.weight.copy_(vectors)
            model.load_encoder(replace(encoder, user_emb=encoder.user_emb[:0], user_index={}))
        by_row = sorted(encoder.user_index, key=encoder.user_index.__getitem__)
        users = ckpt.user_ids if ckpt is not None else by_row
        if config.user_embedding and users:
            learner.add_users(users)
            with torch.no_grad():
                for row, user in enumerate(learner.user_ids):
                    old = encoder.user_index.get(user)
                    if old is not None and old < encoder.user_emb.shape[0]:
                        model.user_emb.weight[row] = torch.from_numpy(encoder.user_emb[old])
        if ckpt is not None:
            if learner.user_ids == ckpt.user_ids:  # the accumulators have one row per user
                learner.sparse.load_state_dict(ckpt.sparse_opt)
            try:
                learner.dense.load_state_dict(ckpt.dense_opt)
            except ValueError as exc:
                # A checkpoint of a tower with other parameters: Adam restarts its moments.
                log.warning("user-tower optimiser state not restored (%s)", exc)
            try:
                learner.freq.load_state_dict(ckpt.freq)
            except ValueError as exc:
                # A checkpoint of an older estimator: the counts rebuild from the stream.
                log.warning("frequency estimate not restored (%s); starting uniform", exc)
            learner.step = ckpt.step
        return learner

    def seed_frequencies(self, examples: Examples) -> None:
        """Exact label counts of ``examples``: the data at hand is the training set."""
        self.freq.seed(examples.labels)

    @property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    def add_users(self, users: Iterable[str]) -> None:
        """Give unseen users a row of the per-user table (known users first, then new ones in
        order of appearance); nothing without per-user embeddings."""
        if not self.config.user_embedding:
            return
        users = list(users)
        grown = list(dict.fromkeys([*self.user_ids, *users]))
        if len(grown) == len(self.user_ids):
            return
        old_rows = len(self.user_ids)
        old_weight = self.model.user_emb.weight
        self.model.resize_users(len(grown))
        self.user_ids = grown
        # The item table keeps its accumulators; the user table's grow with zero rows.
        state = self.sparse.state.pop(old_weight, None)
        self.sparse.param_groups[0]["params"][1] = self.model.user_emb.weight
        if state is not None and "sum" in state:
            acc = torch.zeros(len(grown), dtype=state["sum"].dtype)
            acc[:old_rows] = state["sum"][:old_rows]
            self.sparse.state[self.model.user_emb.weight] = {"sum": acc}
        self._record("add_users", users)

    def add_items(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Append rows for new items (the catalog's cold-start items) starting from the unit
        ``vectors`` (K, D). Rows are only ever appended, so every row number held elsewhere
        (replay examples, the IVF ids, the item feedback, per-item optimiser and frequency
        state) stays valid. A new row gets the median norm of the existing raw rows (the
        warm start keeps raw norms: a unit row would be an outlier to Adagrad), a zero Adagrad
        accumulator (its first updates are full-size: the item is new) and a zero label
        count (logQ adds S/N to every count, so an unseen item's log q stays finite)."""
        fresh = [item for item in item_ids if item not in self.item_index]
        if len(fresh) != len(item_ids) or len(set(fresh)) != len(fresh):
            raise ConfigError("new item ids must be unique and not in the catalog yet")
        if vectors.shape != (len(fresh), self.config.dim):
            raise ConfigError(f"cold-start vectors {vectors.shape} for {len(fresh)} new items")
        if not fresh:
            return
        old = self.model.item_emb.weight
        n, k = old.shape[0], len(fresh)
        with torch.no_grad():
            scale = old.norm(dim=1).median() if n else torch.tensor(1.0)
            rows = torch.from_numpy(np.asarray(vectors, dtype=np.float32)) * scale  # (K, D)
            table = torch.cat([old.detach(), rows])  # (N + K, D)
        self.model.item_emb = torch.nn.Embedding(n + k, self.config.dim, sparse=True, _weight=table)
        weight = self.model.item_emb.weight
        self.sparse.param_groups[0]["params"][0] = weight
        state = self.sparse.state.pop(old, None)
        if state is not None and "sum" in state:
            grown = torch.zeros(n + k, dtype=state["sum"].dtype)
            grown[:n] = state["sum"]
            self.sparse.state[weight] = {"sum": grown}
        self.freq.grow(n + k)
        for item in fresh:
            self.item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
        self.digest = catalog_digest(self.item_ids)
        self._record("add_items", fresh, np.array(vectors, dtype=np.float32))

    def forget_users(self, users: Iterable[str]) -> int:
        """Erase users' rows of the per-user table; how many it held. A row is zeroed (with
        its optimiser state) and its id replaced by a tombstone no valid id can equal ("|"
        cannot occur in one): rows keep their places, so user rows elsewhere stay valid, and
        no version written from now on names or carries the user. A user who comes back
        gets a new row."""
        users = list(users)
        index = self.user_index
        rows = sorted({index[u] for u in users if u in index})
        if not rows:
            return 0
        weight = self.model.user_emb.weight
        with torch.no_grad():
            weight[rows] = 0.0
        state = self.sparse.state.get(weight)
        if state is not None and "sum" in state:
            state["sum"][rows] = 0.0
        for row in rows:
            self.user_ids[row] = f"|erased|{row}"
        self._record("forget_users", users)
        return len(rows)

    def train(
        self, examples: Examples, *, epochs: int, stream: bool, progress: bool = False
    ) -> list[dict[str, float]]:
        """``epochs`` passes over ``examples`` (their user rows index ``user_ids``); one loss
        record per epoch. ``stream``: the label counts of the logQ correction follow the
        batches (online rounds); otherwise they stay as seeded (exact, ``seed_frequencies``).

        Replicated, every rank calls it (rank 0 first tells the others to) and trains its
        shard of each batch; the records are the group's. Any failure then raises GroupLost
        (the other ranks may be waiting in a collective), except Diverged, raised on every
        rank alike after the last step."""
        config = self.config
        torch.set_num_threads(config.threads)
        if len(examples) and examples.history_len != config.history_len:
            raise ConfigError(
                f"examples have L={examples.history_len}, config {config.history_len}"
            )
        parallel = self.parallel
        if parallel is None:
            return self._epochs(examples, epochs=epochs, stream=stream, progress=progress)
        if parallel.leader:
            self._announce(examples, epochs=epochs, stream=stream)
        try:
            if self._objective is None:  # the first time: DDP imports torch._dynamo, ~4 s
                self._objective = parallel.objective(Objective(self.model), Objective.SPARSE)
                log.info("rank %d of %d: model replicated", parallel.rank, parallel.world)
            history = self._epochs(examples, epochs=epochs, stream=stream, progress=progress)
        except GroupLost:
            raise
        except Exception as exc:
            parallel.lost = True  # the others may be waiting in a collective of this step
            raise GroupLost(f"training failed on rank {parallel.rank}: {exc!r}") from exc
        parallel.check_identical(self.fingerprint())
        return history

    def _announce(self, examples: Examples, *, epochs: int, stream: bool) -> None:
        """Rank 0: send the other ranks this learner (if they do not hold it) or its changes,
        and what to train."""
        assert self.parallel is not None
        new = self.parallel.synced != self.uid
        self.parallel.send(
            Plan(
                learner=self if new else None,
                changes=[] if new else self._changes,
                examples=examples,
                epochs=epochs,
                stream=stream,
            )
        )
        self.parallel.synced = self.uid
        self._changes = []

    def _loss(self, batch: Batch, generator: torch.Generator) -> LossParts:
        config = self.config
        objective = self._objective
        kwargs: dict[str, Any] = {
            "config": config,
            "freq": self.freq,
            "generator": generator,
            "mask_dislike_input": config.dislike_negatives and not config.dislike_input,
        }
        if objective is None:
            return batch_loss(self.model, batch, **kwargs)
        parts: LossParts = objective(batch, **kwargs)
        return parts

    def _epochs(
        self, examples: Examples, *, epochs: int, stream: bool, progress: bool
    ) -> list[dict[str, float]]:
        config = self.config
        parallel = self.parallel
        rng = np.random.default_rng(config.seed + self.step)  # the same order on every rank
        # Sampled negatives: each rank its own draw (rank 0's is a single process's).
        rank = parallel.rank if parallel is not None else 0
        generator = torch.Generator().manual_seed(config.seed + self.step + (rank << 32))
        weights = _type_weights(config)
        tables = [self.model.item_emb.weight]
        if self.model.n_users:
            tables.append(self.model.user_emb.weight)
        history: list[dict[str, float]] = []
        n = len(examples)
        steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
        bar = tqdm(
            total=steps_per_epoch * epochs,
            desc="training",
            unit="step",
            disable=not progress or rank != 0,
        )
        self.model.train()
        for epoch in range(epochs if n else 0):
            started = time.perf_counter()
            order = rng.permutation(n)
            sums = {"total": 0.0, "softmax": 0.0, "ntr": 0.0}
            counts = {"total": 0, "softmax": 0, "ntr": 0}
            for start in range(0, n, config.batch_size):
                rows = order[start : start + config.batch_size]
                shard = Shard(rows, 1.0, len(rows)) if parallel is None else parallel.shard(rows)
                batch = _batch(examples, shard.rows, weights)
                parts = self._loss(batch, generator)
                self.sparse.zero_grad(set_to_none=True)
                self.dense.zero_grad(set_to_none=True)
                loss = parts.total if shard.scale == 1.0 else parts.total * shard.scale
                loss.backward()  # type: ignore[no-untyped-call]
                if parallel is not None:
                    parallel.reduce_sparse(tables)
                self.sparse.step()
                self.dense.step()
                if stream:  # the global batch's labels, on every rank
                    labels = batch.labels if parallel is None else examples.labels[rows]
                    self.freq.update(torch.as_tensor(labels))
                self.step += 1
                sums["total"] += float(parts.total.detach()) * shard.size
                counts["total"] += shard.size
                if parts.positives and shard.size:
                    sums["softmax"] += parts.softmax * parts.positives
                    counts["softmax"] += parts.positives
                if parts.negatives and shard.size and config.uses_ntr:
                    sums["ntr"] += parts.ntr * parts.negatives
                    counts["ntr"] += parts.negatives
                bar.update(1)
            if parallel is not None:  # the group's records, not this shard's
                keys = list(sums)
                reduced = parallel.reduce_sums(
                    [*(sums[k] for k in keys), *(float(counts[k]) for k in keys)]
                )
                sums = dict(zip(keys, reduced[: len(keys)], strict=True))
                counts = {k: int(v) for k, v in zip(keys, reduced[len(keys) :], strict=True)}
            elapsed = time.perf_counter() - started
            record: dict[str, float] = {"step": float(self.step), "epoch": float(epoch)}
            record.update({k: (sums[k] / counts[k] if counts[k] else 0.0) for k in sums})
            record["examples"] = float(n)
            record["examples_per_second"] = n / elapsed if elapsed > 0 else 0.0
            history.append(record)
        bar.close()
        self.model.eval()
        return history

    def fingerprint(self) -> str:
        """A digest of everything training changes: parameters, optimiser and frequency
        state, step and users (equal on every rank of a group)."""
        h = hashlib.blake2b(digest_size=16)

        def add(t: torch.Tensor) -> None:
            h.update(np.ascontiguousarray(t.detach().numpy()).reshape(-1).view(np.uint8).data)

        for p in self.model.parameters():
            add(p)
        for optimiser in (self.sparse, self.dense):
            for group in optimiser.param_groups:
                for p in group["params"]:
                    for _, value in sorted(optimiser.state.get(p, {}).items()):
                        if isinstance(value, torch.Tensor):
                            add(value)
                        else:
                            h.update(repr(value).encode())
        add(self.freq.counts)
        h.update(repr((self.freq.total, self.step, self.user_ids, len(self.item_ids))).encode())
        return h.hexdigest()

    def checkpoint(self) -> Checkpoint:
        """The state a later warm start continues from (tensors cloned: training goes on)."""
        return Checkpoint(
            catalog=self.digest,
            config=self.config,
            user_ids=list(self.user_ids),
            item_norms=self.model.item_emb.weight.detach().norm(dim=1).clone(),
            sparse_opt=_clone(self.sparse.state_dict()),
            dense_opt=_clone(self.dense.state_dict()),
            freq=_clone(self.freq.state_dict()),
            step=self.step,
        )

    def export(self, loss_history: list[dict[str, float]]) -> FitResult:
        """Serving arrays of the current model, with its checkpoint."""
        return FitResult(
            vectors=self.model.export_vectors(),
            encoder=self.model.export_encoder(self.user_ids),
            loss_history=loss_history,
            checkpoint=self.checkpoint(),
        )


def _clone(state: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a state_dict's tensors, so later steps do not change a saved one."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().clone()
        elif isinstance(value, dict):
            out[key] = _clone(value)
        elif isinstance(value, list):
            out[key] = [_clone(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def fit(
    interactions: Sequence[Interaction],
    *,
    item_ids: Sequence[str],
    config: TrainConfig,
    init: FitResult | None = None,
    progress: bool = False,
    parallel: DataParallel | None = None,
) -> FitResult:
    """Train on ``interactions`` (oldest first) for ``config.epochs`` epochs.

    Each labelled event is an example: the user's history before it is the input, its item
    the label. ``init`` warm-starts from a previous result (its checkpoint when present, else
    its exported arrays). Raises UnknownItem for an item not in ``item_ids`` and ConfigError
    when ``init`` does not match the catalog or the model size. With ``parallel`` (rank 0),
    the group's other ranks train with it (they run ``follow``).
    """
    learner = (
        Learner(item_ids=item_ids, config=config, warm=False)
        if init is None
        else Learner.warm(init, item_ids=item_ids, config=config)
    )
    if parallel is not None:
        learner.replicate(parallel)
    learner.add_users(x.user_id for x in interactions)
    examples = make_examples(
        interactions, item_index=learner.item_index, user_index=learner.user_index, config=config
    )
    learner.seed_frequencies(examples)
    history = learner.train(examples, epochs=config.epochs, stream=False, progress=progress)
    return learner.export(history)


def follow(parallel: DataParallel) -> None:
    """Ranks other than 0: train what rank 0 announces (``Learner._announce``) until it says
    stop. Raises GroupLost when the group is lost."""
    learner: Learner | None = None
    while True:
        plan = parallel.receive()
        if plan.examples is None:
            return
        if plan.learner is not None:
            learner = plan.learner
            learner.replicate(parallel)
        if learner is None:
            raise GroupLost(f"rank {parallel.rank} was sent changes to a learner it does not hold")
        for method, args in plan.changes:
            if method not in _REPLAYED:
                raise GroupLost(f"rank 0 asked for {method!r}, not a learner change")
            getattr(learner, method)(*args)
        started = time.perf_counter()
        log.info("training %d examples, %d epochs", len(plan.examples), plan.epochs)
        try:
            learner.train(plan.examples, epochs=plan.epochs, stream=plan.stream)
            log.info("trained in %.2fs", time.perf_counter() - started)
        except Diverged:
            log.exception("rank %d diverged from rank 0; waiting for its state", parallel.rank)
            learner = None
