"""The trainer's loop: fine-tune the current model on streamed feedback, round after round.

A round reads top to bottom (``Trainer.train_round``):

    collect → catalog → forget → examples → fit → maintain index → export → publish → ack
    → record

Catalog (``trainer.online.cold_start``): items the catalog gained since the version get a
row with a cold-start vector (their category's mean), and the catalog's categories replace
the version's; a round runs for such a change alone (no new event), as for an erasure, so a
new item is recommendable within one round of its ``PUT``. Its feedback, in that round or
later, trains its row like any other.

Cold rows (``ModelState.cold``): the rows added with a cold-start vector that no round has
trained yet; each version lists them (``cold_items.json``), and a warm start reads them back
from the version it continues. A row leaves the set in the round that fits an example with
the item as its label or in its history (``cold_start.trained``): its embedding then gets a
gradient step from feedback on the item. Being drawn as a sampled negative does not count.

Forget (``trainer.online.erasures``): events of users erased after they were sent are not
trained on, erased users' replay examples and per-user rows are dropped, and a like or
dislike the user withdrew is neither a label nor, in the replay sample, an example or its
context. A round runs for pending erasures alone (no new event): a version without the user
is published within one round of the erasure.

The model being fine-tuned stays in memory between rounds (``ModelState``: the torch model
with its optimisers, the replay sample, the index); it is loaded from disk only when the
published pointer is not the version this process last published (start, rollback, another
writer) or after a failed round.

Data-parallel (``veto train --nproc N``, ``trainer.learn.parallel``): this process is rank 0,
the only one that talks to Redis and writes versions; its learner is replicated, so its
``train`` hands the other ranks the round's examples and each trains a shard. A lost rank
(``GroupLost``) ends the loop instead of failing one round: the group cannot be used again.

Crash safety: an event is acked only after a version trained on it is published, so a crash
re-reads it; a re-read event already inside the published version's watermark (killed between
publish and ack) is acked without training again, so each is trained on once. A version
directory appears complete or not at all (``write_version`` renames a finished temp dir) and
its number is max(on disk) + 1, refused if it exists. At most one round starts per
``interval`` unless ``max_events`` are waiting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainer.learn.config import TrainConfig
from trainer.learn.examples import UNKNOWN_OWNER, Examples, make_examples, owner_of, owners_of
from trainer.learn.fit import FitResult, Learner
from trainer.learn.parallel import DataParallel
from trainer.learn.prior import ItemFeedback
from trainer.online import cold_start, erasures
from trainer.online.cold_start import CatalogDiff
from trainer.online.export import load_model, write_model
from trainer.online.histories import fetch_histories, round_interactions
from trainer.online.index import IndexKeeper
from trainer.online.metrics import TrainerMetrics
from trainer.online.replay import ReplayBuffer
from trainer.online.stream import Entry, FeedbackReader, stream_id_key
from veto import items, partitions, registry
from veto.artifacts import Watermark, prune, version_dir
from veto.connection import Client
from veto.errors import GroupLost, NoModelVersion
from veto.events import EventType, FeedbackEvent
from veto.settings import TrainerSettings

log = logging.getLogger("veto.trainer")

# Places in a round where the fault tests kill the process, in round order: after
# fine-tuning, inside the version's temp dir (half-written), after the version directory is
# in place but before the pointer moves, after publishing before the ack.
CRASH_POINTS = ("after_fit", "mid_export", "before_publish", "before_ack")
Hook = Callable[[str], None]


def no_hook(point: str) -> None:
    """The production hook: rounds run through every point."""


@dataclass
class ModelState:
    """The version being fine-tuned and everything that continues it, kept between rounds."""

    version: int
    item_ids: list[str]
    categories: list[str | None]
    popular: list[str]
    watermark: Watermark
    vectors: np.ndarray  # (N, D) unit rows of ``version``: what the index holds
    learner: Learner
    replay: ReplayBuffer
    index: IndexKeeper
    feedback: ItemFeedback  # like/dislike counts per item: the next version's item prior
    # Rows whose vector is still the untrained cold-start one (module docstring).
    cold: set[int] = field(default_factory=set)
    # The catalog generation whose items and categories the version holds; -1: not compared
    # yet (a state loaded from disk is compared with the catalog on its first round).
    catalog_generation: int = -1


@dataclass(frozen=True)
class RoundReport:
    version: int
    events: int
    examples: int
    skipped: int
    loss: dict[str, float]
    seconds: float
    items_added: int = 0


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


def _trained(watermark: Watermark, entry: Entry) -> bool:
    """Whether ``entry`` is inside ``watermark`` (stream ids increase per partition)."""
    done = watermark.stream_ids.get(str(entry.partition))
    return done is not None and stream_id_key(entry.entry_id) <= stream_id_key(done)


class Trainer:
    """One trainer process: owns the consumer, the model state and the metrics."""

    def __init__(
        self,
        settings: TrainerSettings,
        client: Client,
        *,
        metrics: TrainerMetrics,
        hook: Hook = no_hook,
        parallel: DataParallel | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.hook = hook
        self.parallel = parallel  # rank 0 of a data-parallel group; None: one process
        self.reader = FeedbackReader(
            client,
            partitions=settings.stream_partitions,
            consumer=settings.consumer_name,
            claim_idle_ms=settings.claim_idle_ms,
        )
        self.state: ModelState | None = None
        self._groups_ready = False
        self.catalog = items.CatalogView()
        # The last diff computed, by (catalog generation, state, its row count): a round
        # checks the catalog before and after collecting and computes it once.
        self._diff: tuple[tuple[int, int, int, int], CatalogDiff] | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, interval: float, max_events: int, stop: threading.Event) -> None:
        """``run_once`` until ``stop`` is set; a failed round leaves its events pending."""
        last_start = -math.inf
        while not stop.is_set():
            try:
                report = self.run_once(
                    max_events=max_events, first_wait=1.0, interval_end=last_start + interval
                )
            except NoModelVersion:
                log.info("no model version published yet; waiting")
                stop.wait(interval)
                continue
            except GroupLost:
                self.metrics.failures.inc()
                raise  # the other ranks are gone: nothing published, the events stay pending
            except Exception:
                # Anything, a coding bug included: logged with its traceback and counted, and
                # the next round starts from the published version (nothing half-applied).
                log.exception("round failed, its events stay pending")
                self.metrics.failures.inc()
                self.state = None
                self._groups_ready = False
                stop.wait(min(interval, 2.0))
                continue
            if report is not None:
                last_start = time.monotonic() - report.seconds
                log.info(
                    "version %d: %d events (%d skipped), %d examples, %d new items, "
                    "loss %.4f, %.2fs",
                    report.version,
                    report.events,
                    report.skipped,
                    report.examples,
                    report.items_added,
                    report.loss.get("total", float("nan")),
                    report.seconds,
                )

    def run_once(
        self, *, max_events: int, first_wait: float, interval_end: float | None = None
    ) -> RoundReport | None:
        """One round on what is waiting (None if nothing is); raises on failure, and
        NoModelVersion when nothing is published yet."""
        if not self._groups_ready:
            partitions.check(self.client, self.settings.stream_partitions)
            self.reader.ensure_groups()
            self._groups_ready = True
        self.metrics.pending.set(self.reader.backlog())
        state = self.current_state()
        waiting = self.catalog_changes(state)
        entries = self.collect(
            state,
            max_events=max_events,
            first_wait=0.0 if waiting else first_wait,  # new items: no idle wait for events
            interval_end=time.monotonic() if interval_end is None else interval_end,
        )
        catalog = self.catalog_changes(state)  # writes made while collecting count too
        erased = erasures.read_erased(self.client, partitions=self.settings.stream_partitions)
        if not entries and not erased and not catalog:
            return None
        return self.train_round(state, entries, erased=erased, catalog=catalog)

    # -- one round ----------------------------------------------------------------------------

    def train_round(
        self,
        state: ModelState,
        entries: list[Entry],
        *,
        erased: dict[str, float] | None = None,
        catalog: CatalogDiff | None = None,
    ) -> RoundReport:
        """Take in the catalog's new items and categories, forget what must be, fine-tune on
        ``entries``, publish the next version, then ack them and clear the erasures it
        purged. ``erased`` and ``catalog`` are read when not given."""
        started = time.perf_counter()
        if erased is None:
            erased = erasures.read_erased(self.client, partitions=self.settings.stream_partitions)
        if catalog is None:
            catalog = self.catalog_changes(state)
        added = self.apply_catalog(state, catalog)  # first: this round's events may name them
        events = self.usable_events(state, entries, erased=erased)
        self.forget_users(state, erased)
        labelled = self.forget_withdrawn(state, events)
        new = self.round_examples(state, labelled)
        examples = self.with_replay(state, new)
        loss = (
            state.learner.train(examples, epochs=self.settings.finetune_epochs, stream=True)
            if len(examples)
            else []  # a round for erasures alone: nothing to learn
        )
        if loss:  # fitted: rows with feedback in ``examples`` got their gradient step
            state.cold -= cold_start.trained(state.cold, examples)
        result = state.learner.export(loss)
        self.hook("after_fit")
        state.replay.add(new)  # saved with the version: a restart continues from it
        state.feedback.add(labelled, state.learner.item_index)  # likewise
        index_started = time.perf_counter()
        update = state.index.update(state.vectors, result.vectors)
        watermark = merge_watermark(state.watermark, entries)
        version = self.export(state, result, update.index, watermark)
        self.metrics.index_build.observe(time.perf_counter() - index_started)
        self.hook("before_publish")
        registry.publish(self.client, version)
        self.metrics.published_version.set(version)  # as soon as replicas can swap it in
        self.hook("before_ack")
        self.reader.ack(entries)
        if erased:  # a version without them is published: a crash before this purges again
            erasures.clear(self.client, erased, partitions=self.settings.stream_partitions)
        self.advance(state, version=version, result=result, watermark=watermark)
        state.catalog_generation = catalog.generation
        report = RoundReport(
            version=version,
            events=len(events),
            examples=len(examples),
            skipped=len(entries) - len(events),
            loss=dict(loss[-1]) if loss else {},
            seconds=time.perf_counter() - started,
            items_added=added,
        )
        self.record(report, recall=update.recall, retrained=update.retrained)
        return report

    def current_state(self) -> ModelState:
        """The state of the published version: kept from the last round unless the pointer
        moved underneath (rollback, another writer) or a round failed."""
        try:
            current = registry.current(self.client)
        except NoModelVersion as exc:
            raise NoModelVersion(
                "no model version is published: run `veto bootstrap` first"
            ) from exc
        if self.state is None or self.state.version != current:
            self.state = self.load_state(current)
        return self.state

    def load_state(self, version: int) -> ModelState:
        """Load ``version`` from disk: the warm start of the following rounds."""
        loaded, init = load_model(version_dir(self.settings.artifacts_dir, version))
        manifest = loaded.manifest
        base = (
            init.checkpoint.config
            if init.checkpoint is not None
            else TrainConfig.from_settings(
                self.settings, dim=manifest.dim, history_len=manifest.history_len
            )
        )
        config = replace(base, threads=self.settings.threads)
        item_ids = loaded.item_ids.tolist()
        learner = Learner.warm(init, item_ids=item_ids, config=config)
        if self.parallel is not None:
            learner.replicate(self.parallel)
        log.info("fine-tuning version %d (%d items)", version, len(item_ids))
        return ModelState(
            version=version,
            item_ids=item_ids,
            categories=loaded.categories.tolist(),
            popular=loaded.popular,
            watermark=manifest.watermark,
            vectors=init.vectors,
            learner=learner,
            replay=ReplayBuffer.from_state(
                init.checkpoint.replay if init.checkpoint is not None else {},
                capacity=self.settings.replay_capacity,
                history_len=config.history_len,
            ),
            index=IndexKeeper(
                loaded.index,
                init.vectors,
                flat_max_items=self.settings.flat_max_items,
                nprobe=self.settings.nprobe,
                min_ratio=self.settings.ivf_min_recall_ratio,
                encoding=self.settings.ivf_encoding,
            ),
            feedback=ItemFeedback.from_state(
                init.checkpoint.item_feedback if init.checkpoint is not None else {},
                n_items=len(item_ids),
            ),
            cold=set(loaded.cold_rows),
        )

    def catalog_changes(self, state: ModelState) -> CatalogDiff:
        """What ``state`` lacks of the catalog now (empty: nothing; then the state is marked
        as in step with this generation, and later calls cost one GET until a write)."""
        self.catalog.refresh(self.client)
        generation = self.catalog.generation
        if generation == state.catalog_generation:
            return CatalogDiff(generation)
        key = (generation, state.version, id(state), len(state.item_ids))
        if self._diff is not None and self._diff[0] == key:
            return self._diff[1]
        found = cold_start.diff(self.catalog, state.learner.item_index, state.categories)
        if not found:
            state.catalog_generation = generation
        self._diff = (key, found)
        return found

    def apply_catalog(self, state: ModelState, catalog: CatalogDiff) -> int:
        """Give ``state`` the catalog's categories and a row with a cold-start vector for
        each new item (``trainer.online.cold_start``); how many items it added."""
        for row, category in catalog.recategorised.items():
            state.categories[row] = category
        new = catalog.new_items
        if not new:
            return 0
        vectors = cold_start.cold_vectors(state.vectors, state.categories, catalog.new_categories)
        first = len(state.item_ids)
        state.learner.add_items(new, vectors)
        state.item_ids.extend(new)
        state.categories.extend(catalog.new_categories)
        state.vectors = np.concatenate([state.vectors, vectors])
        state.feedback.grow(len(state.item_ids))
        state.index.grow(vectors, first)
        state.cold.update(range(first, len(state.item_ids)))
        log.info("catalog generation %d: %d new items", catalog.generation, len(new))
        return len(new)

    def collect(
        self, state: ModelState, *, max_events: int, first_wait: float, interval_end: float
    ) -> list[Entry]:
        """The round's entries: this consumer's pending ones, stale ones of others, then new
        ones; waits up to ``first_wait`` s for a first entry and keeps reading until
        ``interval_end`` (monotonic) or ``max_events``.

        A trainer killed after publishing a version but before acking its events re-reads
        them as its own pending entries: those inside the published watermark are acked here
        without training them again (a consumer trains its own pending entries, oldest first,
        before any newer one). Claimed entries are never settled: their history is unknown.
        """
        own = self.reader.own_pending(count=max_events)
        settled = [e for e in own if _trained(state.watermark, e)]
        if settled:
            self.reader.ack(settled)
            log.info("acked %d entries already in version %d", len(settled), state.version)
        entries = [e for e in own if not _trained(state.watermark, e)]
        if len(entries) < max_events:
            entries += self.reader.claim_stale(count=max_events - len(entries))
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

    def usable_events(
        self, state: ModelState, entries: list[Entry], *, erased: dict[str, float] | None = None
    ) -> list[FeedbackEvent]:
        """The entries' events, without malformed ones, items outside the catalog and events
        of users erased after they sent them (counted by reason; they are acked with the
        round all the same)."""
        events: list[FeedbackEvent] = []
        gone = erased or {}
        for e in entries:
            if e.event is None:
                self.metrics.skipped.labels(reason="malformed").inc()
            elif e.event.ingest_time <= gone.get(e.event.user_id, -math.inf):
                # Read before the erasure deleted it (or sent before it): never trained on.
                self.metrics.skipped.labels(reason="erased").inc()
            elif e.event.item_id not in state.learner.item_index:
                self.metrics.skipped.labels(reason="unknown_item").inc()
            else:
                events.append(e.event)
        return events

    def forget_users(self, state: ModelState, erased: dict[str, float]) -> None:
        """Drop erased users' replay examples (and those whose owner was never recorded, an
        older checkpoint's: they might be theirs) and their per-user rows."""
        if not erased:
            return
        owners = state.replay.examples.owners
        gone = np.append(owners_of(erased), UNKNOWN_OWNER)
        dropped = state.replay.forget(~np.isin(owners, gone))
        rows = state.learner.forget_users(erased)
        log.info("erased %d users: %d replay examples, %d user rows", len(erased), dropped, rows)

    def forget_withdrawn(
        self, state: ModelState, events: list[FeedbackEvent]
    ) -> list[FeedbackEvent]:
        """The events to learn from: no withdraw, no like or dislike withdrawn at or after it
        (the user's ``decided`` state in Redis, so a withdraw of a later round counts too).
        Each withdraw also drops the replay examples of that user with that item as label or
        as a like or dislike in their context."""
        withdraws = [e for e in events if e.type == EventType.WITHDRAW]
        deciders = list(dict.fromkeys(e.user_id for e in events if e.type != EventType.WITHDRAW))
        withdrawn = erasures.read_withdrawn(
            self.client, deciders, partitions=self.settings.stream_partitions
        )
        keep = [
            e
            for e in events
            if e.type != EventType.WITHDRAW and not erasures.is_withdrawn(e, withdrawn)
        ]
        skipped = len(events) - len(withdraws) - len(keep)
        if skipped:
            self.metrics.skipped.labels(reason="withdrawn").inc(skipped)
        replay = state.replay.examples
        index = state.learner.item_index
        mask = np.ones(len(replay), dtype=bool)
        for w in withdraws:
            row = index.get(w.item_id)
            if row is None:
                continue
            decided = (replay.items == row) & (replay.types <= int(EventType.DISLIKE))  # (E, L)
            theirs = replay.owners == owner_of(w.user_id)
            mask &= ~(theirs & ((replay.labels == row) | decided.any(axis=1)))
        state.replay.forget(mask)
        return keep

    def round_examples(self, state: ModelState, events: list[FeedbackEvent]) -> Examples:
        """Each event's example, its context (``VETO_ROUND_CONTEXT``) from the user's history
        in Redis."""
        learner = state.learner
        users = list(dict.fromkeys(e.user_id for e in events))
        learner.add_users(users)
        histories = fetch_histories(self.client, users, partitions=self.settings.stream_partitions)
        interactions, targets = round_interactions(events, histories, item_index=learner.item_index)
        return make_examples(
            interactions,
            item_index=learner.item_index,
            user_index=learner.user_index,
            config=replace(learner.config, context=self.settings.round_context),
            targets=targets,
        )

    def with_replay(self, state: ModelState, new: Examples) -> Examples:
        """``new`` plus ``replay_ratio`` times as many older examples from the replay sample."""
        n = math.ceil(self.settings.replay_ratio * len(new))
        return Examples.concat([new, state.replay.sample(n)]) if n else new

    def export(self, state: ModelState, result: FitResult, index: Any, watermark: Watermark) -> int:
        """Write the next version (not yet published); its number."""
        return write_model(
            self.settings.artifacts_dir,
            result=result,
            item_ids=state.item_ids,
            categories=state.categories,
            popular=state.popular,
            watermark=watermark,
            parent=state.version,
            index=index,
            replay=state.replay.state(),
            feedback=state.feedback,
            cold_rows=sorted(state.cold),
            on_checkpoint_written=lambda: self.hook("mid_export"),
        )

    def advance(
        self,
        state: ModelState,
        *,
        version: int,
        result: FitResult,
        watermark: Watermark,
    ) -> None:
        """The published version becomes the one fine-tuned next; old versions are pruned."""
        previous = state.version
        state.version, state.vectors, state.watermark = version, result.vectors, watermark
        prune(
            self.settings.artifacts_dir,
            keep=self.settings.keep_versions,
            protect={version, previous},
        )

    def record(self, report: RoundReport, *, recall: float | None, retrained: bool) -> None:
        """The round's metrics."""
        m = self.metrics
        m.round_duration.observe(report.seconds)
        m.examples.inc(report.examples)
        for component in ("total", "softmax", "ntr"):
            if component in report.loss:
                m.loss.labels(component=component).set(report.loss[component])
        if recall is not None:
            m.index_recall.set(recall)
        if retrained:
            m.index_retrains.inc()
        m.last_round.set(time.time())
