"""Data-parallel training: 2 ranks (real processes, gloo) train to the quality of 1 process,
their parameters and optimiser state stay identical, through rank 0's changes to its model
too (and a difference would be caught); a batch splits exactly over ranks.

Quality, measured on the synthetic world (500 items, 300 users, 20 % of each user's events
held out), the project's own Recall@20 and like-vs-dislike AUC (``trainer.eval.metrics``).
Tolerance: |Δ Recall@20| <= 0.03 and |Δ AUC| <= 0.04, the spread of a single process over
seeds 0-4 with this configuration (Recall@20 0.176-0.197, AUC 0.855-0.895, 2026-12-01): two
ranks draw other negatives, a different but equally good trajectory, and must land where
another seed of one process would. Both runs are deterministic (one thread per process)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch.multiprocessing as mp

from trainer.data.synthetic import SyntheticWorld, make_world
from trainer.eval.metrics import evaluate_model
from trainer.eval.split import Split, random_split
from trainer.eval.users import build_eval_users
from trainer.learn.config import TrainConfig
from trainer.learn.examples import make_examples
from trainer.learn.fit import FitResult, Learner, fit, follow
from trainer.learn.parallel import DataParallel, Diverged, Rank
from veto.cli.redis_server import free_port

pytestmark = pytest.mark.timeout(120)
CONFIG = TrainConfig(dim=16, history_len=10, batch_size=256, epochs=6, n_sampled=128, threads=1)


def _world() -> tuple[SyntheticWorld, Split]:
    world = make_world(
        n_items=500, n_users=300, n_categories=10, dim=16, events_per_user=30, seed=0
    )
    return world, random_split(world.interactions, test_share=0.2, seed=0)


def _quality(result: FitResult, world: SyntheticWorld, split: Split) -> dict[str, float]:
    index = {item: row for row, item in enumerate(world.item_ids)}
    users = build_eval_users(split.train, split.test, item_index=index, history_len=10)
    return evaluate_model(result.encoder, result.vectors, users, ks=(20,))


def _changes_replayed(parallel: DataParallel, world: SyntheticWorld) -> None:
    """Rank 0: a learner with per-user rows trained, changed (new items: a new table; erased
    and new users), trained again, then on one example (a rank without one takes part with a
    zero weight). Every ``train`` ends by comparing the ranks' digests: Diverged otherwise."""
    config = replace(CONFIG, user_embedding=True, epochs=1)
    learner = Learner(item_ids=world.item_ids, config=config, warm=False)
    learner.replicate(parallel)
    learner.add_users(x.user_id for x in world.interactions[:2000])
    examples = make_examples(
        world.interactions[:2000],
        item_index=learner.item_index,
        user_index=learner.user_index,
        config=config,
    )
    learner.train(examples, epochs=1, stream=True)
    learner.add_items(["new1", "new2"], np.eye(2, config.dim, dtype=np.float32))
    learner.forget_users(["u1", "u2"])
    learner.add_users(["newcomer"])
    learner.train(examples, epochs=1, stream=True)
    learner.train(examples.take(np.arange(1)), epochs=1, stream=True)


def _rank(rank: int, world_size: int, port: int, results: Any) -> None:
    """One rank of the group (a spawned process): rank 0 fits, the other follows."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    parallel = DataParallel.join(Rank(rank, world_size), timeout=60)
    world, split = _world()
    try:
        if parallel.leader:
            result = fit(split.train, item_ids=world.item_ids, config=CONFIG, parallel=parallel)
            _changes_replayed(parallel, world)
            parallel.stop()
        else:
            follow(parallel)
        # The check that ends every training call, fed a digest that differs on one rank.
        try:
            parallel.check_identical("the same" if rank else "another")
            diverged = False
        except Diverged:
            diverged = True
        if parallel.leader:
            results.put({**_quality(result, world, split), "diverged": diverged})
    finally:
        parallel.close()


def test_two_ranks_train_to_the_quality_of_one_process() -> None:
    world, split = _world()
    one = _quality(fit(split.train, item_ids=world.item_ids, config=CONFIG), world, split)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    # Every step's sparse and dense all-reduce runs; Learner.train ends with the ranks'
    # digests compared (parameters, optimiser and frequency state): a difference would fail
    # the fit with Diverged and put nothing in the queue.
    mp.start_processes(
        _rank, args=(2, free_port(), results), nprocs=2, start_method="spawn", join=True
    )
    two = results.get()
    assert two.pop("diverged")  # and a difference is caught (on every rank alike)
    assert one["recall@20"] > 0.15 and one["like_dislike_auc"] > 0.8  # chance: 0.04, 0.5
    assert abs(two["recall@20"] - one["recall@20"]) <= 0.03, (one, two)
    assert abs(two["like_dislike_auc"] - one["like_dislike_auc"]) <= 0.04, (one, two)


@pytest.mark.parametrize(("n", "world_size"), [(1024, 2), (1023, 2), (5, 3), (1, 2)])
def test_a_global_batch_splits_into_strides_whose_weights_make_its_mean(
    n: int, world_size: int
) -> None:
    rows = np.random.default_rng(0).permutation(n).astype(np.int64)
    shards = [
        DataParallel(Rank(r, world_size), control=None).shard(rows) for r in range(world_size)
    ]
    counted = np.concatenate([s.rows for s in shards if s.size])
    assert sorted(counted.tolist()) == sorted(rows.tolist())  # each example once
    # The ranks' mean of scale × (their shard's mean loss) is the batch's mean loss: each
    # example weighs scale / (N · size), which must be 1 / n.
    for s in shards:
        if s.size:
            assert s.scale / (world_size * s.size) == pytest.approx(1 / n)
        else:
            assert s.scale == 0.0 and len(s.rows) == 1  # takes part, weighs nothing
