"""veto train: rounds publish versions with watermarks, ack only after, survive restarts."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.conftest import BOTH
from tests.trainer.online.feedback import PARTITIONS, send
from trainer.learn.checkpoint import Checkpoint
from trainer.online import bootstrap, main
from trainer.online.loop import Trainer
from trainer.online.metrics import TrainerMetrics
from veto import keys, registry
from veto.artifacts import CHECKPOINT, list_versions, load_version, read_manifest, version_dir
from veto.connection import connect_url
from veto.errors import ArtifactError
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys
from veto.settings import TrainerSettings

pytestmark = pytest.mark.parametrize("redis_backend", BOTH, indirect=True)


@pytest.fixture
def bootstrapped(trainer_env: Path) -> Path:
    """Version 1 of a 200-item synthetic catalog, published, histories in Redis."""
    code = bootstrap.main(["--dataset", "synthetic", "--items", "200", "--epochs", "2", "--quiet"])
    assert code == 0
    return trainer_env


def _trainer(**overrides: object) -> tuple[Trainer, TrainerMetrics, redis.Redis]:
    settings = TrainerSettings(**overrides)  # type: ignore[arg-type]
    client = connect_url(settings.redis_url)
    metrics = TrainerMetrics(CollectorRegistry())
    return Trainer(settings, client, metrics=metrics), metrics, client


def _pending(client: redis.Redis) -> int:
    total = 0
    for stream in keys.streams(PARTITIONS):
        if client.exists(stream):
            info = client.xpending(stream, keys.CONSUMER_GROUP)
            total += int(info["pending"])
    return total


def test_once_publishes_a_version_with_the_watermark_and_acks(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    sent = [send(redis_client, f"u{n}", f"i{n}", EventType.LIKE) for n in range(5)]
    sent.append(send(redis_client, "u1", "i7", EventType.DISLIKE))
    assert main.main(["--once"]) == 0
    assert registry.current(redis_client) == 2
    manifest = read_manifest(version_dir(bootstrapped, 2))
    assert manifest.parent == 1
    assert manifest.watermark.ingest_time == max(e.ingest_time for e, _ in sent)
    newest: dict[str, str] = {}
    for event, stream_id in sent:
        newest[str(UserKeys(event.user_id, PARTITIONS).partition)] = stream_id
    assert manifest.watermark.stream_ids == newest
    assert _pending(redis_client) == 0
    assert main.main(["--once"]) == 0  # nothing new: no version
    assert list_versions(bootstrapped) == [1, 2]


def test_a_killed_round_leaves_events_pending_and_a_restart_trains_on_them(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    for n in range(3):
        send(redis_client, f"u{n}", f"i{n + 10}", EventType.LIKE)
    first, _, client = _trainer()
    first.reader.ensure_groups()
    delivered = first.collect(
        first.current_state(), max_events=100, first_wait=0.1, interval_end=0.0
    )
    assert len(delivered) == 3 and _pending(redis_client) == 3
    client.close()  # the process dies here: nothing trained, nothing acked
    assert registry.current(redis_client) == 1
    second, _, client = _trainer()
    report = second.run_once(max_events=100, first_wait=0.1)
    assert report is not None and report.events == 3 and report.version == 2
    assert _pending(redis_client) == 0
    client.close()


def test_stale_entries_of_a_dead_consumer_are_claimed(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    send(redis_client, "u3", "i3", EventType.LIKE)
    dead, _, client = _trainer(consumer_name="trainer-old")
    dead.reader.ensure_groups()
    assert (
        len(dead.collect(dead.current_state(), max_events=10, first_wait=0.1, interval_end=0.0))
        == 1
    )
    client.close()
    other, _, client = _trainer(consumer_name="trainer-new", claim_idle_ms=0)
    report = other.run_once(max_events=10, first_wait=0.0)
    assert report is not None and report.events == 1
    assert _pending(redis_client) == 0
    client.close()


def test_unknown_items_and_malformed_entries_are_skipped_counted_and_acked(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    send(redis_client, "u1", "no-such-item", EventType.LIKE)
    send(redis_client, "u1", "i4", EventType.LIKE)
    redis_client.xadd(keys.stream(0), {"garbage": "1"})
    trainer, metrics, client = _trainer()
    report = trainer.run_once(max_events=100, first_wait=0.1)
    assert report is not None and report.events == 1 and report.skipped == 2
    value = metrics.registry.get_sample_value
    assert value("veto_trainer_skipped_events_total", {"reason": "unknown_item"}) == 1
    assert value("veto_trainer_skipped_events_total", {"reason": "malformed"}) == 1
    assert _pending(redis_client) == 0
    client.close()


def test_round_metrics(bootstrapped: Path, redis_client: redis.Redis) -> None:
    send(redis_client, "u2", "i5", EventType.DISLIKE)
    trainer, metrics, client = _trainer()
    assert trainer.run_once(max_events=100, first_wait=0.1) is not None
    value = metrics.registry.get_sample_value
    assert value("veto_trainer_published_version") == 2
    assert value("veto_trainer_examples_total") >= 1
    assert value("veto_trainer_round_duration_seconds_count") == 1
    assert value("veto_trainer_index_build_seconds_count") == 1
    assert value("veto_trainer_last_round_timestamp_seconds") > 0
    assert value("veto_trainer_loss", {"component": "ntr"}) > 0
    assert value("veto_trainer_round_failures_total") == 0
    assert value("veto_trainer_pending_events") == 0
    client.close()


def test_a_trained_dislike_moves_the_item_down_for_that_user(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    user = "u7"
    before = load_version(version_dir(bootstrapped, 1))
    old = [HistoryEntry.decode(r) for r in redis_client.lrange(UserKeys(user, 4).history, 0, -1)]
    state = before.encoder.encode(
        before.vectors, [before.item_ids.get(h.item_id) for h in old], [int(h.type) for h in old]
    )
    # The item the model likes most for this user: its p is high, so NTR has work to do.
    item = before.item_ids[int(np.argmax(np.asarray(before.vectors) @ state))]
    send(redis_client, user, item, EventType.DISLIKE)
    raw = redis_client.lrange(UserKeys(user, PARTITIONS).history, 0, -1)

    def score(version_number: int) -> float:
        version = load_version(version_dir(bootstrapped, version_number))
        history = [HistoryEntry.decode(r) for r in raw]
        state = version.encoder.encode(
            version.vectors,
            version.item_ids.rows([h.item_id for h in history]).tolist(),
            [int(h.type) for h in history],
        )
        return float(np.asarray(version.vectors)[version.item_ids.get(item)] @ state)

    trainer, _, client = _trainer()
    assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    assert score(2) < score(1) - 0.01
    client.close()


def test_versions_are_pruned_and_numbers_never_reused(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    trainer, _, client = _trainer(keep_versions=2)
    for n in range(3):
        send(redis_client, "u1", f"i{n}", EventType.LIKE)
        assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    assert list_versions(bootstrapped) == [3, 4]
    assert registry.current(redis_client) == 4
    client.close()


def test_rollback_is_followed(bootstrapped: Path, redis_client: redis.Redis) -> None:
    trainer, _, client = _trainer()
    send(redis_client, "u1", "i1", EventType.LIKE)
    assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    registry.publish(redis_client, 1)  # an operator rolls back
    send(redis_client, "u2", "i2", EventType.LIKE)
    report = trainer.run_once(max_events=10, first_wait=0.1)
    assert report is not None and report.version == 3
    assert read_manifest(version_dir(bootstrapped, 3)).parent == 1
    client.close()


def test_the_loop_publishes_until_stopped(bootstrapped: Path, redis_client: redis.Redis) -> None:
    trainer, metrics, client = _trainer()
    stop = threading.Event()
    thread = threading.Thread(
        target=trainer.run, kwargs={"interval": 0.2, "max_events": 100, "stop": stop}
    )
    thread.start()
    try:
        send(redis_client, "u1", "i9", EventType.DISLIKE)
        for _ in range(100):
            if registry.current(redis_client) == 2:
                break
            stop.wait(0.1)
        assert registry.current(redis_client) == 2
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert metrics.registry.get_sample_value("veto_trainer_round_failures_total") == 0
    client.close()


def test_once_without_a_published_version_is_an_error(
    trainer_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["--once"]) == 1
    assert "veto bootstrap" in capsys.readouterr().err


def test_a_failed_round_publishes_nothing_and_keeps_its_events_pending(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    send(redis_client, "u1", "i1", EventType.LIKE)
    blocker = version_dir(bootstrapped, 2)
    blocker.write_text("not a version")  # the next number is taken: write_version refuses it
    trainer, _, client = _trainer()
    with pytest.raises(ArtifactError, match="already exists"):
        trainer.run_once(max_events=10, first_wait=0.1)
    assert registry.current(redis_client) == 1
    assert _pending(redis_client) == 1
    blocker.unlink()
    retry, _, other = _trainer()
    report = retry.run_once(max_events=10, first_wait=0.1)
    assert report is not None and report.version == 2 and report.events == 1
    assert _pending(redis_client) == 0
    client.close()
    other.close()


@pytest.mark.parametrize(("ratio", "retrains"), [("0", 0.0), ("1.5", 1.0)])
def test_a_large_catalog_keeps_its_ivf_index_updated_row_by_row(
    trainer_env: Path,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    ratio: str,
    retrains: float,
) -> None:
    # Ratio 0: never trained anew, only updated; 1.5: any recall is "too low", always trained.
    monkeypatch.setenv("VETO_FLAT_MAX_ITEMS", "50")  # 200 items: IVF
    monkeypatch.setenv("VETO_IVF_MIN_RECALL_RATIO", ratio)
    assert bootstrap.main(["--items", "200", "--epochs", "1", "--quiet"]) == 0
    send(redis_client, "u1", "i1", EventType.DISLIKE)
    trainer, metrics, client = _trainer()
    assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    registry = metrics.registry
    assert registry.get_sample_value("veto_trainer_index_retrains_total") == retrains
    recall = registry.get_sample_value("veto_trainer_index_recall")
    assert recall is not None and 0.0 < recall <= 1.0
    old, new = (load_version(version_dir(trainer_env, v)) for v in (1, 2))
    assert new.manifest.index_type == "ivf"
    vectors = np.asarray(new.vectors)
    assert not np.array_equal(vectors, np.asarray(old.vectors))  # the round moved some rows
    # The published index has the trained-anew quantizer exactly when a retrain was counted.
    quantizers = [faiss.extract_index_ivf(v.index).quantizer for v in (old, new)]
    same = np.array_equal(*(q.reconstruct_n(0, q.ntotal) for q in quantizers))
    assert same == (retrains == 0.0)
    faiss_index = new.index
    faiss_index.nprobe = faiss_index.nlist  # exhaustive: the index must hold exactly these
    scores, ids = new.nearest(vectors, 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(len(vectors)))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    client.close()


def test_the_model_and_its_optimisers_stay_in_memory_between_rounds(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    trainer, _, client = _trainer()
    send(redis_client, "u1", "i1", EventType.LIKE)
    assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    assert trainer.state is not None
    learner, optimiser = trainer.state.learner, trainer.state.learner.sparse
    step = learner.step
    send(redis_client, "u2", "i2", EventType.LIKE)
    report = trainer.run_once(max_events=10, first_wait=0.1)
    assert report is not None and report.version == 3
    assert trainer.state.learner is learner and learner.sparse is optimiser  # not reloaded
    assert learner.step > step
    client.close()


def test_a_coding_bug_in_a_round_is_logged_with_its_traceback_and_counted(
    bootstrapped: Path, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    def bug(point: str) -> None:
        if point == "after_fit":
            raise ZeroDivisionError("a bug in the round")

    settings = TrainerSettings()
    client = connect_url(settings.redis_url)
    metrics = TrainerMetrics(CollectorRegistry())
    trainer = Trainer(settings, client, metrics=metrics, hook=bug)
    send(redis_client, "u1", "i1", EventType.LIKE)
    stop = threading.Event()
    thread = threading.Thread(
        target=trainer.run, kwargs={"interval": 0.2, "max_events": 10, "stop": stop}
    )
    thread.start()
    try:
        for _ in range(100):
            if metrics.registry.get_sample_value("veto_trainer_round_failures_total"):
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert metrics.registry.get_sample_value("veto_trainer_round_failures_total") >= 1
    failed = [r for r in caplog.records if r.getMessage().startswith("round failed")]
    assert failed and failed[0].exc_info is not None
    assert failed[0].exc_info[0] is ZeroDivisionError  # the traceback, not only the message
    assert registry.current(redis_client) == 1 and _pending(redis_client) == 1
    client.close()


def test_a_round_adds_its_likes_and_dislikes_to_the_item_prior(
    bootstrapped: Path, redis_client: redis.Redis
) -> None:
    before = load_version(version_dir(bootstrapped, 1))
    for n in range(3):
        send(redis_client, f"u{n}", "i5", EventType.DISLIKE)
    send(redis_client, "u0", "i6", EventType.LIKE)
    send(redis_client, "u1", "i8", EventType.CLICK)  # not a like or dislike: no change
    assert main.main(["--once"]) == 0
    after = load_version(version_dir(bootstrapped, 2))
    counted = Checkpoint.load(before.path / CHECKPOINT).item_feedback
    checkpoint = Checkpoint.load(after.path / CHECKPOINT)
    likes = checkpoint.item_feedback["likes"].numpy()
    dislikes = checkpoint.item_feedback["dislikes"].numpy()
    added = (likes - counted["likes"].numpy(), dislikes - counted["dislikes"].numpy())
    np.testing.assert_allclose(after.item_prior, np.log((likes + 1) / (dislikes + 1)), rtol=1e-6)
    # The bootstrap's counts continued: only the round's like and dislikes moved the prior.
    i5, i6, i8 = after.item_ids.rows(["i5", "i6", "i8"]).tolist()
    assert np.flatnonzero(added[0]).tolist() == [i6] and added[0][i6] == 1
    assert np.flatnonzero(added[1]).tolist() == [i5] and added[1][i5] == 3
    changed = np.flatnonzero(~np.isclose(after.item_prior, before.item_prior))
    assert sorted(changed.tolist()) == sorted([i5, i6])
    assert (
        after.item_prior[i5] == pytest.approx(np.log((likes[i5] + 1) / (dislikes[i5] + 1)))
        and after.item_prior[i5] < before.item_prior[i5]
    )
    assert after.item_prior[i6] > before.item_prior[i6]
    assert after.item_prior[i8] == before.item_prior[i8]
    assert main.main(["--once"]) == 0  # nothing new: counts are kept, no version


@pytest.mark.parametrize(("context", "sees_later"), [("causal", False), ("bag", True)])
def test_a_rounds_context_follows_round_context(
    bootstrapped: Path, redis_client: redis.Redis, context: str, sees_later: bool
) -> None:
    trainer, _, client = _trainer(round_context=context)
    send(redis_client, "u1", "i1", EventType.LIKE)
    assert trainer.run_once(max_events=10, first_wait=0.1) is not None
    assert trainer.state is not None
    like, _ = send(redis_client, "u9", "i3", EventType.LIKE)
    dislike, _ = send(redis_client, "u9", "i4", EventType.DISLIKE)
    examples = trainer.round_examples(trainer.state, [like, dislike])
    rows = trainer.state.learner.item_index
    first = examples.labels.tolist().index(rows["i3"])  # the like's example
    # Causal: the like's input is what the service encoded when it served i3, not the
    # dislike that came after it.
    assert (rows["i4"] in examples.items[first].tolist()) is sees_later
    client.close()
