"""``veto bootstrap``: build the catalog and version 1 from a dataset.

Reads top to bottom: settings, dataset, examples, pre-training, version, histories, publish.
Everything that can be validated is validated before anything is written; the version is
published last, once the users' histories it will be served with are in Redis.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import redis
from pydantic import ValidationError

from trainer.config import TrainConfig
from trainer.datasets import DATASETS, load_dataset
from trainer.export import popular_items, write_model
from trainer.fit import fit_examples, known_users, make_examples
from trainer.histories import load_histories
from trainer.replay import ReplayBuffer
from trainer.settings import TrainerSettings
from veto import registry
from veto.artifacts import Watermark, version_dir
from veto.errors import ConfigError, NoModelVersion, StoreUnavailable, VetoError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veto bootstrap", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic", choices=DATASETS)
    p.add_argument("--path", type=Path, default=None, help="dataset file or directory")
    p.add_argument("--items", type=int, default=None, help="catalog size (synthetic only)")
    p.add_argument("--like-min", type=float, default=4.0, help="ratings >= this are likes")
    p.add_argument("--dislike-max", type=float, default=2.0, help="ratings <= this are dislikes")
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--if-empty", action="store_true", help="do nothing if a version is published")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _published(client: redis.Redis) -> int | None:
    try:
        return registry.current(client)
    except NoModelVersion:
        return None


def _status(message: str, progress: bool) -> None:
    """A line for the steps without a progress bar (they can take a while on 1M items)."""
    if progress:
        print(f"veto bootstrap: {message}", flush=True)


def run(args: argparse.Namespace, settings: TrainerSettings, client: redis.Redis) -> int:
    """Bootstrap with parsed arguments; returns the version published (0 if skipped)."""
    progress = not args.quiet
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis at {settings.redis_url} is unavailable: {exc}") from exc
    if args.if_empty and (current := _published(client)) is not None:
        print(f"veto bootstrap: version {current} is already published; nothing to do")
        return 0
    if args.like_min <= args.dislike_max:
        raise ConfigError("--like-min must be above --dislike-max")
    config = TrainConfig(
        objective=settings.objective,
        dim=settings.dim,
        history_len=settings.history_len,
        epochs=settings.bootstrap_epochs if args.epochs is None else args.epochs,
        seed=args.seed,
        threads=settings.threads,
    )
    started = time.perf_counter()
    _status(f"loading dataset {args.dataset} ...", progress)
    dataset = load_dataset(
        args.dataset,
        args.path,
        like_min=args.like_min,
        dislike_max=args.dislike_max,
        items=args.items,
        seed=args.seed,
    )
    if not dataset.interactions:
        raise ConfigError(f"dataset {dataset.name!r} has no interactions")
    item_index = {item: i for i, item in enumerate(dataset.item_ids)}
    user_ids = known_users(dataset.interactions, config, None)
    examples = make_examples(
        dataset.interactions,
        item_index=item_index,
        user_index={u: i for i, u in enumerate(user_ids)},
        config=config,
    )
    print(
        f"veto bootstrap: {dataset.name}: {len(dataset.item_ids)} items, "
        f"{len(dataset.interactions)} interactions, {len(examples)} examples"
    )
    result = fit_examples(
        examples, item_ids=dataset.item_ids, user_ids=user_ids, config=config, progress=progress
    )
    replay = ReplayBuffer(
        capacity=settings.replay_capacity, history_len=config.history_len, seed=args.seed
    )
    replay.add(examples)
    _status(f"writing the version ({len(dataset.item_ids)} items, index, checkpoint) ...", progress)
    version = write_model(
        settings.artifacts_dir,
        result=result,
        item_ids=dataset.item_ids,
        categories=dataset.categories,
        popular=popular_items(dataset.interactions, dataset.item_ids, settings.popular_size),
        config=config,
        watermark=Watermark(),
        parent=None,
        extra_checkpoint={"replay": replay.state()},
        flat_max_items=settings.flat_max_items,
        nprobe=settings.nprobe,
    )
    try:
        users = load_histories(
            client,
            dataset.interactions,
            partitions=settings.stream_partitions,
            history_len=settings.history_len,
            progress=progress,
        )
        registry.publish(client, version)
    except BaseException:
        # Never published: remove it so that a retry starts from the same state.
        shutil.rmtree(version_dir(settings.artifacts_dir, version), ignore_errors=True)
        raise
    loss = result.loss_history[-1]["total"] if result.loss_history else float("nan")
    print(
        f"veto bootstrap: published version {version} ({users} users' histories, "
        f"final loss {loss:.4f}) in {time.perf_counter() - started:.1f}s"
    )
    return version


def main(argv: list[str]) -> int:
    """Entry point of ``veto bootstrap``."""
    args = _parser().parse_args(argv)
    try:
        settings = TrainerSettings()
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=max(settings.redis_timeout_seconds, 5.0)
        )
        try:
            run(args, settings, client)
        finally:
            client.close()
    except ValidationError as exc:
        print(f"veto bootstrap: error: bad VETO_* setting: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"veto bootstrap: error: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"veto bootstrap: error: {exc.message}", file=sys.stderr)
        return 1
    except VetoError as exc:
        print(f"veto bootstrap: error: {exc.message}", file=sys.stderr)
        return 2
    return 0
