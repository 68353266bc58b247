"""``veto bootstrap``: build the catalog and version 1 from a dataset.

Reads top to bottom: settings, dataset, examples, pre-training, version, histories, catalog,
publish. Everything that can be validated is validated before anything is written; the version
is published last, once the users' histories and the catalog (``veto.items``: every item with
its category) it will be served with are in Redis. With ``--if-empty`` and a version already
published, a deployment whose catalog was never written (bootstrapped before the catalog
existed) gets it seeded from the served version's items and categories.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import redis

from trainer.data.load import DATASETS, load_dataset
from trainer.learn.config import TrainConfig
from trainer.learn.examples import make_examples
from trainer.learn.fit import Learner
from trainer.learn.prior import ItemFeedback
from trainer.online.export import popular_items, write_model
from trainer.online.histories import load_histories
from trainer.online.index import build_index
from trainer.online.replay import ReplayBuffer
from veto import items, keys, partitions, registry
from veto.artifacts import ITEM_CATEGORIES, ITEM_IDS, Watermark, version_dir
from veto.connection import Client, connect
from veto.errors import ConfigError, NoModelVersion, StoreUnavailable, VetoError, report
from veto.settings import TrainerSettings, load_settings


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


def _published(client: Client) -> int | None:
    try:
        return registry.current(client)
    except NoModelVersion:
        return None


def _status(message: str, progress: bool) -> None:
    """A line for the steps without a progress bar (they can take a while on 1M items)."""
    if progress:
        print(f"veto bootstrap: {message}", flush=True)


def run(args: argparse.Namespace, settings: TrainerSettings, client: Client) -> int:
    """Bootstrap with parsed arguments; returns the version published (0 if skipped)."""
    progress = not args.quiet
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis at {settings.redis_url} is unavailable: {exc}") from exc
    if args.if_empty and (current := _published(client)) is not None:
        seeded = _seed_from_version(client, settings, current)
        extra = f"; catalog seeded with its {seeded} items" if seeded else ""
        print(f"veto bootstrap: version {current} is already published{extra}; nothing to do")
        return 0
    if args.like_min <= args.dislike_max:
        raise ConfigError("--like-min must be above --dislike-max")
    config = TrainConfig.from_settings(
        settings,
        epochs=settings.bootstrap_epochs if args.epochs is None else args.epochs,
        seed=args.seed,
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
    # Before training: a deployment set up with another count refuses at once. After the
    # input is checked: bad input writes nothing, this record included.
    partitions.check(client, settings.stream_partitions)
    learner = Learner(item_ids=dataset.item_ids, config=config, warm=False)
    learner.add_users(x.user_id for x in dataset.interactions)
    examples = make_examples(
        dataset.interactions,
        item_index=learner.item_index,
        user_index=learner.user_index,
        config=config,
    )
    print(
        f"veto bootstrap: {dataset.name}: {len(dataset.item_ids)} items, "
        f"{len(dataset.interactions)} interactions, {len(examples)} examples"
    )
    learner.seed_frequencies(examples)  # exact counts; the trainer's rounds decay them
    history = learner.train(examples, epochs=config.epochs, stream=False, progress=progress)
    result = learner.export(history)
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
        watermark=Watermark(),
        parent=None,
        index=build_index(
            result.vectors,
            flat_max_items=settings.flat_max_items,
            nprobe=settings.nprobe,
            encoding=settings.ivf_encoding,
        ),
        replay=replay.state(),
        feedback=ItemFeedback.count(dataset.interactions, learner.item_index),
    )
    try:
        users = load_histories(
            client,
            dataset.interactions,
            partitions=settings.stream_partitions,
            history_len=settings.history_len,
            progress=progress,
        )
        _status(f"seeding the catalog ({len(dataset.item_ids)} items) ...", progress)
        items.seed(client, zip(dataset.item_ids, dataset.categories, strict=True))
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


def _seed_from_version(client: Client, settings: TrainerSettings, version: int) -> int:
    """Seed a catalog that was never written from ``version``'s items and categories; 0 when
    the catalog has been written to (it is the source of truth then) or the files are gone."""
    if client.exists(keys.CATALOG_GENERATION):
        return 0
    path = version_dir(settings.artifacts_dir, version)
    try:
        item_ids = json.loads((path / ITEM_IDS).read_text())
        categories = json.loads((path / ITEM_CATEGORIES).read_text())
    except (OSError, ValueError):
        return 0  # the service keeps treating the version's items as the catalog
    return items.seed(client, zip(item_ids, categories, strict=True))


def main(argv: list[str]) -> int:
    """Entry point of ``veto bootstrap``."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(TrainerSettings)
        client = connect(settings)
        try:
            run(args, settings, client)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
        finally:
            client.close()
    except VetoError as exc:
        return report("veto bootstrap", exc)
    return 0
