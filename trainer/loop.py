"""``veto train``: the trainer process. Fine-tunes the current model on streamed feedback.

Reads top to bottom: settings, Redis, current model, then rounds forever. A round: read
events (own pending first, then claimed stale ones, then new), build each event's example
from the user's history before it, mix in a replay sample, fine-tune warm-started from the
current version, write the next version, publish it, and only then ack the events.

Crash safety: an event is acked only after a version trained on it is published, so a crash
re-reads it; a re-read event already inside the published version's watermark (killed between
publish and ack) is acked without training again, so each is trained on once. A version
directory appears complete or not at all (``write_version`` renames a finished temp dir) and
its number is max(on disk) + 1, refused if it exists. At most one round starts per
``--interval`` unless ``--max-events`` are waiting.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from trainer.config import TrainConfig
from trainer.examples import Examples
from trainer.export import load_warm_start, write_model
from trainer.faults import crash_point
from trainer.fit import FitResult, fit_examples
from trainer.index import IndexPlan, refresh_index, sampled_recall
from trainer.metrics import TrainerMetrics, serve_metrics
from trainer.replay import ReplayBuffer
from trainer.rounds import fetch_histories, round_examples
from trainer.settings import TrainerSettings
from trainer.stream import Entry, FeedbackReader, stream_id_key
from veto import registry
from veto.artifacts import Watermark, build_index, prune, version_dir
from veto.errors import ArtifactError, NoModelVersion, StoreUnavailable, VetoError

log = logging.getLogger("veto.trainer")


@dataclass
class ModelState:
    """The version being fine-tuned, kept in memory between rounds."""

    version: int
    item_ids: list[str]
    item_index: dict[str, int]
    categories: list[str | None]
    popular: list[str]
    watermark: Watermark
    result: FitResult
    config: TrainConfig
    replay: ReplayBuffer
    index: Any | None  # the version's IVF index, updated round to round; None: flat, rebuilt
    index_plan: IndexPlan | None  # with ``index``: when to train a new one


@dataclass(frozen=True)
class RoundReport:
    version: int
    events: int
    examples: int
    skipped: int
    loss: dict[str, float]
    seconds: float


def _config(
    settings: TrainerSettings, checkpoint: dict[str, Any], dim: int, length: int
) -> TrainConfig:
    """The model's own config (from its checkpoint), with this process's round settings."""
    base = (
        TrainConfig.from_dict(checkpoint["config"])
        if isinstance(checkpoint.get("config"), dict)
        else TrainConfig(objective=settings.objective, dim=dim, history_len=length)
    )
    return replace(base, epochs=settings.finetune_epochs, threads=settings.threads)


def merge_watermark(previous: Watermark, entries: list[Entry]) -> Watermark:
    """The previous watermark advanced by ``entries``: newest stream id per partition and
    the newest ingest time."""
    ids = dict(previous.stream_ids)
    ingest = previous.ingest_time
    for e in entries:
        key = str(e.partition)
        if key not in ids or stream_id_key(e.entry_id) > stream_id_key(ids[key]):
            ids[key] = e.entry_id
        if e.event is not None:
            ingest = e.event.ingest_time if ingest is None else max(ingest, e.event.ingest_time)
    return Watermark(ingest_time=ingest, stream_ids=ids)


class Trainer:
    """One trainer process: owns the consumer, the in-memory model state and the metrics."""

    def __init__(
        self, settings: TrainerSettings, client: redis.Redis, *, metrics: TrainerMetrics
    ) -> None:
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.reader = FeedbackReader(
            client,
            partitions=settings.stream_partitions,
            consumer=settings.consumer_name,
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.state: ModelState | None = None

    def load_current(self) -> ModelState | None:
        """The current version's state (reloaded only when the pointer moved); None if none."""
        try:
            current = registry.current(self.client)
        except NoModelVersion:
            return None
        if self.state is not None and self.state.version == current:
            return self.state
        warm = load_warm_start(version_dir(self.settings.artifacts_dir, current))
        checkpoint = warm.result.checkpoint
        manifest = warm.version.manifest
        config = _config(self.settings, checkpoint, manifest.dim, manifest.history_len)
        replay_state = checkpoint.get("replay")
        index = warm.version.index if manifest.index_type == "ivf" else None
        self.state = ModelState(
            version=current,
            item_ids=warm.version.item_ids,
            item_index=warm.version.item_index,
            categories=warm.version.categories,
            popular=warm.version.popular,
            watermark=manifest.watermark,
            result=warm.result,
            config=config,
            replay=ReplayBuffer.from_state(
                replay_state if isinstance(replay_state, dict) else {},
                capacity=self.settings.replay_capacity,
                history_len=config.history_len,
            ),
            index=index,
            index_plan=None
            if index is None
            else IndexPlan(
                baseline=sampled_recall(index, warm.result.vectors),
                min_ratio=self.settings.ivf_min_recall_ratio,
            ),
        )
        log.info("fine-tuning version %d (%d items)", current, len(warm.version.item_ids))
        return self.state

    def collect(self, *, max_events: int, first_wait: float, interval_end: float) -> list[Entry]:
        """Pending entries, then new ones: waits up to ``first_wait`` s for a first event and
        keeps reading until ``interval_end`` (monotonic) or ``max_events``."""
        entries = self.reader.pending(count=max_events)
        if not entries and first_wait > 0:
            entries = self.reader.new(count=max_events, block_ms=max(1, int(first_wait * 1000)))
        while len(entries) < max_events:
            more = self.reader.new(count=max_events - len(entries), block_ms=None)
            entries += more
            if time.monotonic() >= interval_end or len(entries) >= max_events:
                break
            if not more:
                time.sleep(min(0.05, max(0.0, interval_end - time.monotonic())))
        return entries

    def settle_trained(self, state: ModelState, *, count: int) -> int:
        """Ack this consumer's pending entries that the current version already trained on;
        how many.

        A trainer killed after publishing a version but before acking its events re-reads
        them as its own pending entries: they are inside that version's watermark (stream
        ids increase per partition, and a consumer trains its own pending entries, oldest
        first, before any newer one), so training on them again would count them twice.
        Entries claimed from another consumer are not settled: their history is unknown."""
        done = state.watermark.stream_ids
        trained = [
            e
            for e in self.reader.own_pending(count=count)
            if str(e.partition) in done
            and stream_id_key(e.entry_id) <= stream_id_key(done[str(e.partition)])
        ]
        if trained:
            self.reader.ack(trained)
            log.info("acked %d entries already in version %d", len(trained), state.version)
        return len(trained)

    def train_round(self, state: ModelState, entries: list[Entry]) -> RoundReport:
        """Fine-tune on ``entries``, publish the next version, then ack them."""
        started = time.perf_counter()
        events = []
        skipped = 0
        for e in entries:
            if e.event is None:
                self.metrics.skipped.labels(reason="malformed").inc()
                skipped += 1
            elif e.event.item_id not in state.item_index:
                self.metrics.skipped.labels(reason="unknown_item").inc()
                skipped += 1
            else:
                events.append(e.event)
        config = state.config
        user_ids = list(state.result.checkpoint.get("user_ids", []))
        if config.user_embedding:
            user_ids = list(dict.fromkeys([*user_ids, *(e.user_id for e in events)]))
        users = list(dict.fromkeys(e.user_id for e in events))
        histories = fetch_histories(self.client, users, partitions=self.settings.stream_partitions)
        new = round_examples(
            events,
            histories,
            item_index=state.item_index,
            user_index={u: i for i, u in enumerate(user_ids)},
            config=config,
        )
        replay_n = math.ceil(self.settings.replay_ratio * len(new))
        parts = [new, state.replay.sample(replay_n)] if replay_n else [new]
        examples = Examples.concat(parts)
        result = fit_examples(
            examples,
            item_ids=state.item_ids,
            user_ids=user_ids,
            config=config,
            init=state.result,
        )
        crash_point("after_fit")
        state.replay.add(new)
        watermark = merge_watermark(state.watermark, entries)
        write_started = time.perf_counter()
        if state.index is not None and state.index_plan is not None:
            refresh_index(state.index, state.result.vectors, result.vectors)
            recall = sampled_recall(state.index, result.vectors)
            if state.index_plan.due(recall):
                log.info(
                    "IVF recall@10 %.3f fell below %.2f x %.3f: training a new index",
                    recall,
                    state.index_plan.min_ratio,
                    state.index_plan.baseline,
                )
                state.index, _ = build_index(
                    result.vectors,
                    flat_max_items=self.settings.flat_max_items,
                    nprobe=self.settings.nprobe,
                )
                recall = sampled_recall(state.index, result.vectors)
                state.index_plan.baseline = recall
                self.metrics.index_retrains.inc()
            self.metrics.index_recall.set(recall)
        version = write_model(
            self.settings.artifacts_dir,
            result=result,
            item_ids=state.item_ids,
            categories=state.categories,
            popular=state.popular,
            config=config,
            watermark=watermark,
            parent=state.version,
            extra_checkpoint={"replay": state.replay.state()},
            flat_max_items=self.settings.flat_max_items,
            nprobe=self.settings.nprobe,
            index=state.index,
        )
        self.metrics.index_build.observe(time.perf_counter() - write_started)
        crash_point("before_publish")
        registry.publish(self.client, version)
        crash_point("before_ack")
        self.reader.ack(entries)
        previous = state.version
        state.version, state.result, state.watermark = version, result, watermark
        prune(
            self.settings.artifacts_dir,
            keep=self.settings.keep_versions,
            protect={version, previous},
        )
        loss = dict(result.loss_history[-1]) if result.loss_history else {}
        seconds = time.perf_counter() - started
        self.metrics.round_duration.observe(seconds)
        self.metrics.examples.inc(len(examples))
        for component in ("total", "softmax", "ntr"):
            if component in loss:
                self.metrics.loss.labels(component=component).set(loss[component])
        self.metrics.published_version.set(version)
        self.metrics.last_round.set(time.time())
        return RoundReport(version, len(events), len(examples), skipped, loss, seconds)

    def run_once(self, *, max_events: int, first_wait: float) -> RoundReport | None:
        """One round on what is waiting (None if nothing is); raises on failure."""
        self.reader.ensure_groups()
        state = self.load_current()
        if state is None:
            raise NoModelVersion("no model version is published: run `veto bootstrap` first")
        self.settle_trained(state, count=max_events)
        entries = self.collect(
            max_events=max_events, first_wait=first_wait, interval_end=time.monotonic()
        )
        if not entries:
            return None
        return self.train_round(state, entries)

    def run(self, *, interval: float, max_events: int, stop: threading.Event) -> None:
        """Rounds until ``stop`` is set; a failed round leaves its events pending."""
        last_start = -math.inf
        groups_ready = False
        while not stop.is_set():
            try:
                if not groups_ready:
                    self.reader.ensure_groups()
                    groups_ready = True
                self.metrics.pending.set(self.reader.backlog())
                state = self.load_current()
                if state is None:
                    log.info("no model version published yet; waiting")
                    stop.wait(interval)
                    continue
                self.settle_trained(state, count=max_events)
                entries = self.collect(
                    max_events=max_events,
                    first_wait=1.0,
                    interval_end=last_start + interval,
                )
                if not entries:
                    continue
                last_start = time.monotonic()
                report = self.train_round(state, entries)
                log.info(
                    "version %d: %d events (%d skipped), %d examples, loss %.4f, %.2fs",
                    report.version,
                    report.events,
                    report.skipped,
                    report.examples,
                    report.loss.get("total", float("nan")),
                    report.seconds,
                )
            except (VetoError, OSError, RuntimeError, ValueError) as exc:
                self.metrics.failures.inc()
                log.error("round failed, its events stay pending: %s", exc)
                self.state = None  # reload from the published version: no half-applied round
                groups_ready = False
                stop.wait(min(interval, 2.0))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veto train", description=__doc__.splitlines()[0])
    p.add_argument("--metrics-port", type=int, default=None, help="0 = no metrics server")
    p.add_argument("--interval", type=float, default=None, help="seconds between rounds")
    p.add_argument("--max-events", type=int, default=None, help="events that start a round")
    p.add_argument("--once", action="store_true", help="one round on what is waiting, then exit")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``veto train``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = TrainerSettings()
    except ValidationError as exc:
        print(f"veto train: error: bad VETO_* setting: {exc}", file=sys.stderr)
        return 2
    interval = settings.interval_seconds if args.interval is None else args.interval
    max_events = settings.max_events if args.max_events is None else args.max_events
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if interval <= 0 or max_events < 1:
        print("veto train: error: --interval must be > 0 and --max-events >= 1", file=sys.stderr)
        return 2
    metrics = TrainerMetrics(CollectorRegistry())
    client = redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=max(settings.redis_timeout_seconds, 5.0),
    )
    trainer = Trainer(settings, client, metrics=metrics)
    try:
        if args.once:
            report = trainer.run_once(max_events=max_events, first_wait=min(interval, 1.0))
            if report is None:
                print("veto train: no events waiting")
            else:
                print(
                    f"veto train: published version {report.version} "
                    f"({report.events} events, {report.skipped} skipped)"
                )
            return 0
        if port:
            serve_metrics(metrics, port)
        stop = threading.Event()
        # A stop signal ends the loop between rounds; a kill mid-round loses nothing either.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            trainer.run(interval=interval, max_events=max_events, stop=stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    except (StoreUnavailable, ArtifactError) as exc:
        print(f"veto train: error: {exc.message}", file=sys.stderr)
        return 1
    except VetoError as exc:
        print(f"veto train: error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        client.close()
