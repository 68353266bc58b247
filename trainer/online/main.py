"""``veto train``: the trainer process's entry point (settings, Redis, metrics, signals)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from prometheus_client import CollectorRegistry

from trainer.online.loop import Hook, Trainer, no_hook
from trainer.online.metrics import TrainerMetrics, serve_metrics
from veto.connection import connect
from veto.errors import VetoError, report
from veto.settings import TrainerSettings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="veto train",
        description="Fine-tune the current model on streamed feedback and publish new versions.",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="0 = no metrics server")
    p.add_argument("--interval", type=float, default=None, help="seconds between rounds")
    p.add_argument("--max-events", type=int, default=None, help="events that start a round")
    p.add_argument("--once", action="store_true", help="one round on what is waiting, then exit")
    return p


def main(argv: list[str], *, hook: Hook = no_hook) -> int:
    """Entry point of ``veto train``; ``hook`` runs at each of a round's crash points."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = load_settings(
            TrainerSettings,
            metrics_port=args.metrics_port,
            interval_seconds=args.interval,
            max_events=args.max_events,
        )
    except VetoError as exc:
        return report("veto train", exc)
    metrics = TrainerMetrics(CollectorRegistry())
    client = connect(settings)
    try:
        trainer = Trainer(settings, client, metrics=metrics, hook=hook)
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
