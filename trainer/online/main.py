"""``veto train``: the trainer process's entry point (settings, Redis, metrics, signals).

With ``--nproc N`` (N > 1) it launches N ranks of itself (``trainer.online.launch``); a rank
(RANK / WORLD_SIZE set, by that launcher or by torchrun) joins the data-parallel group: rank
0 runs the trainer below, the others train its shards (``trainer.learn.fit.follow``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from prometheus_client import CollectorRegistry

from trainer.learn.fit import follow
from trainer.learn.parallel import DataParallel, Rank
from trainer.online.launch import check_nproc, launch
from trainer.online.loop import Hook, Trainer, no_hook
from trainer.online.metrics import TrainerMetrics, serve_metrics
from veto.connection import connect
from veto.errors import VetoError, report
from veto.settings import TrainerSettings, load_settings

log = logging.getLogger("veto.trainer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="veto train",
        description="Fine-tune the current model on streamed feedback and publish new versions.",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="0 = no metrics server")
    p.add_argument("--interval", type=float, default=None, help="seconds between rounds")
    p.add_argument("--max-events", type=int, default=None, help="events that start a round")
    p.add_argument("--once", action="store_true", help="one round on what is waiting, then exit")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="data-parallel ranks on this machine (torch.distributed, gloo); default 1",
    )
    return p


def main(argv: list[str], *, hook: Hook = no_hook) -> int:
    """Entry point of ``veto train``; ``hook`` runs at each of a round's crash points."""
    args = _parser().parse_args(argv)
    rank = Rank.from_env(os.environ)
    where = "" if rank is None else f" rank{rank.rank}"
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(name)s{where} %(message)s")
    try:
        settings = load_settings(
            TrainerSettings,
            metrics_port=args.metrics_port,
            interval_seconds=args.interval,
            max_events=args.max_events,
        )
        if args.nproc is not None:
            check_nproc(args.nproc, in_group=rank is not None)
    except VetoError as exc:
        return report("veto train", exc)
    if args.nproc is not None and args.nproc > 1:
        return launch(argv, nproc=args.nproc, threads=settings.threads)
    if rank is None:
        return _train(args, settings, parallel=None, hook=hook)
    try:
        parallel = DataParallel.join(rank, timeout=settings.dist_timeout_seconds)
    except VetoError as exc:
        return report("veto train", exc)
    log.info("rank %d of %d, pid %d", rank.rank, rank.world, os.getpid())
    try:
        if parallel.leader:
            return _train(args, settings, parallel=parallel, hook=hook)
        follow(parallel)
        return 0
    except VetoError as exc:
        return report("veto train", exc)
    finally:
        parallel.close()


def _train(
    args: argparse.Namespace,
    settings: TrainerSettings,
    *,
    parallel: DataParallel | None,
    hook: Hook,
) -> int:
    """The trainer (rank 0 of a group with ``parallel``, which it releases when it ends)."""
    metrics = TrainerMetrics(CollectorRegistry())
    client = connect(settings)
    try:
        trainer = Trainer(settings, client, metrics=metrics, hook=hook, parallel=parallel)
        if args.once:
            done = trainer.run_once(
                max_events=settings.max_events, first_wait=min(settings.interval_seconds, 1.0)
            )
            if done is None:
                print("veto train: no events waiting")
            else:
                print(
                    f"veto train: published version {done.version} "
                    f"({done.events} events, {done.skipped} skipped)"
                )
            return 0
        if settings.metrics_port:
            serve_metrics(metrics, settings.metrics_port)
        stop = threading.Event()
        # A stop signal ends the loop between rounds; a kill mid-round loses nothing either.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            trainer.run(
                interval=settings.interval_seconds, max_events=settings.max_events, stop=stop
            )
        except KeyboardInterrupt:
            stop.set()
        return 0
    except VetoError as exc:
        return report("veto train", exc)
    finally:
        client.close()
        if parallel is not None:
            parallel.stop()
