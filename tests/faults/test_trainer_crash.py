"""``veto train`` killed mid-round, then restarted: no event lost, none trained twice, no version
number published twice, no half-written version visible; and a running ``veto serve`` refuses a
partial or tampered version, counts it, and keeps serving the old one.

Where the trainer dies: ``tests/faults/crashing_trainer.py`` runs ``veto train`` with a hook
that ``os._exit``s at a named point of a round (after fine-tuning, inside the export with the temp
directory half-written, before publishing, after publishing before the ack), which is as
abrupt as SIGKILL and exactly placed; a second test SIGKILLs a looping trainer at seeded
random moments while it works through a backlog.

"Trained on exactly once" is checked with the trainer's own accounting: the replay reservoir in
each version's checkpoint counts every new example ever trained (``seen``), so the published
version's count minus the bootstrap's must equal the number of labelled events sent."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import torch

from tests.faults.crashing_trainer import EXIT_CODE as FAULT_EXIT_CODE
from tests.processes import ServeProcess, VetoProcess, bootstrapped_env, eventually
from trainer.online.loop import CRASH_POINTS as POINTS
from veto import keys, registry
from veto.artifacts import (
    CHECKPOINT,
    list_versions,
    load_version,
    read_manifest,
    version_dir,
)
from veto.events import EventType, FeedbackEvent, HistoryEntry
from veto.keys import UserKeys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
PARTITIONS = 4
SETTINGS = {
    "stream_partitions": str(PARTITIONS),
    "history_len": "8",
    "dim": "16",
    "threads": "1",
    "finetune_epochs": "1",
    "metrics_port": "0",
    "replay_ratio": "1",
    "keep_versions": "50",  # nothing pruned: every version stays inspectable
}


@pytest.fixture
def trainer_env(
    redis_url: str, artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Version 1 bootstrapped (in-process) on a 200-item synthetic catalog; the env of the
    ``veto train`` children."""
    return bootstrapped_env(
        monkeypatch, redis_url=redis_url, artifacts_dir=str(artifacts_dir), **SETTINGS
    )


class PublishLog:
    """Every version number announced on the model channel, in order."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.MODEL_CHANNEL)
        self.numbers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.05)
            if message is not None:
                self.numbers.append(int(message["data"]))

    def close(self) -> list[int]:
        time.sleep(0.2)  # the last notice is delivered
        self._stop.set()
        self._thread.join(timeout=5)
        self.pubsub.close()
        self.client.close()
        return self.numbers


@pytest.fixture
def publishes(redis_url: str, trainer_env: dict[str, str]) -> Iterator[PublishLog]:
    log = PublishLog(redis_url)
    yield log
    if not log._stop.is_set():
        log.close()


def send_events(client: redis.Redis, n: int, *, seed: int) -> list[FeedbackEvent]:
    """``n`` likes/dislikes of catalog items, written as the service writes them."""
    rng = random.Random(seed)
    now = time.time()
    sent = []
    for k in range(n):
        event = FeedbackEvent(
            event_id=f"s{seed}-{k}",
            user_id=f"crash{rng.randrange(12)}",
            item_id=f"i{rng.randrange(200)}",
            type=rng.choice((EventType.LIKE, EventType.DISLIKE)),
            timestamp=now + k * 0.001,
            ingest_time=now,
        )
        uk = UserKeys(event.user_id, PARTITIONS)
        pipe = client.pipeline(transaction=True)
        pipe.xadd(uk.stream, event.to_fields())  # type: ignore[arg-type]
        entry = HistoryEntry(event.item_id, event.type, event.timestamp).encode()
        pipe.lpush(uk.history, entry)
        pipe.ltrim(uk.history, 0, 7)
        pipe.sadd(uk.liked if event.type == EventType.LIKE else uk.disliked, event.item_id)
        pipe.execute()
        sent.append(event)
    return sent


def train_once(
    env: dict[str, str], *, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["train", "--once", "--max-events", "1000"]
    command = (
        ["-m", "tests.faults.crashing_trainer", fault, *args[1:]]
        if fault
        else ["-m", "veto.cli", *args]
    )
    return subprocess.run(
        [sys.executable, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def seen(root: Path, version: int) -> int:
    """New examples ever trained along the chain up to ``version`` (its replay counter)."""
    checkpoint = torch.load(version_dir(root, version) / CHECKPOINT, weights_only=True)
    replay = checkpoint.get("replay", {})
    return int(replay.get("seen", 0)) if isinstance(replay, dict) else 0


def pending(client: redis.Redis) -> int:
    return sum(
        int(client.xpending(s, keys.CONSUMER_GROUP)["pending"])
        for s in keys.streams(PARTITIONS)
        if client.exists(s)
    )


def assert_consistent(root: Path, client: redis.Redis, *, published: list[int]) -> int:
    """The invariants after recovery; returns the current version."""
    assert pending(client) == 0, "events left unacked"
    assert len(published) == len(set(published)), f"a version published twice: {published}"
    assert published == sorted(published), f"versions published out of order: {published}"
    visible = list_versions(root)
    for v in visible:  # complete and intact, or not visible at all
        load_version(version_dir(root, v))
    current = registry.current(client)
    assert current == visible[-1] or current in visible
    assert covered(root, client), "the published watermark misses stream entries"
    # Watermarks never go back along the published chain.
    chain = [v for v in visible if v == 1 or v in published]
    for older, newer in itertools.pairwise(chain):
        a = read_manifest(version_dir(root, older)).watermark.stream_ids
        b = read_manifest(version_dir(root, newer)).watermark.stream_ids
        assert all(_sid(b.get(k, "0-0")) >= _sid(x) for k, x in a.items()), (older, newer)
    return current


def covered(root: Path, client: redis.Redis) -> bool:
    """True when the published version's watermark covers the newest entry of every stream."""
    marks = read_manifest(version_dir(root, registry.current(client))).watermark.stream_ids
    for p, stream in enumerate(keys.streams(PARTITIONS)):
        last = client.xrevrange(stream, count=1)
        if last and (str(p) not in marks or _sid(marks[str(p)]) < _sid(last[0][0])):
            return False
    return True


def _sid(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@pytest.mark.parametrize("point", POINTS)
def test_a_trainer_killed_mid_round_recovers_without_loss_or_double_training(
    point: str,
    trainer_env: dict[str, str],
    publishes: PublishLog,
    redis_client: redis.Redis,
    artifacts_dir: Path,
) -> None:
    base = seen(artifacts_dir, 1)
    events = send_events(redis_client, 40, seed=len(point))

    crashed = train_once(trainer_env, fault=point)
    assert crashed.returncode == FAULT_EXIT_CODE, crashed.stdout + crashed.stderr
    temps = [p.name for p in artifacts_dir.iterdir() if p.name.startswith(".")]
    after_crash = list_versions(artifacts_dir)
    if point == "mid_export":
        assert temps, "the crash should have left a half-written temp directory"
    assert after_crash == ([1] if point in ("after_fit", "mid_export") else [1, 2])
    assert registry.current(redis_client) == (2 if point == "before_ack" else 1)
    assert pending(redis_client) == len(events)  # nothing acked before the crash

    recovered = train_once(trainer_env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    current = assert_consistent(artifacts_dir, redis_client, published=publishes.close())
    # Each event trained on exactly once along the published chain.
    assert seen(artifacts_dir, current) - base == len(events)
    # A version written but never published is skipped, never reused or overwritten.
    assert current == (2 if point in ("after_fit", "mid_export", "before_ack") else 3)


def test_a_looping_trainer_sigkilled_at_random_moments_trains_each_event_once(
    trainer_env: dict[str, str],
    publishes: PublishLog,
    redis_client: redis.Redis,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    rng = random.Random(1234)
    base = seen(artifacts_dir, 1)
    events = send_events(redis_client, 30, seed=1)
    feeding = threading.Event()
    feeder_client = redis.Redis.from_url(trainer_env["VETO_REDIS_URL"], decode_responses=True)

    def feed() -> None:  # a steady trickle, so the trainer is always mid-round
        for batch in itertools.count(100):
            if not feeding.wait(0) or batch > 10_000:
                return
            events.extend(send_events(feeder_client, 3, seed=batch))
            time.sleep(0.05)

    env = {**trainer_env, "VETO_INTERVAL_SECONDS": "0.1", "VETO_MAX_EVENTS": "20"}
    trainer = VetoProcess("train", [], env=env, log_path=tmp_path / "train.log")
    feeding.set()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for _ in range(4):
            started = trainer.log().count("fine-tuning version")
            trainer.start()
            eventually(lambda n=started: trainer.log().count("fine-tuning version") > n,
                       timeout=60, what="the trainer to start its rounds", every=0.05)  # fmt: skip
            time.sleep(rng.uniform(0.05, 1.5))  # seeded: somewhere in a round
            trainer.kill()
    finally:
        feeding.clear()
        feeder.join(timeout=10)
        feeder_client.close()
    trainer.start()
    try:
        eventually(
            lambda: pending(redis_client) == 0 and covered(artifacts_dir, redis_client),
            timeout=90,
            what="the trainer to catch up",
            every=0.2,
        )
    finally:
        assert trainer.stop() in (0, -15), trainer.log()
    current = assert_consistent(artifacts_dir, redis_client, published=publishes.close())
    assert seen(artifacts_dir, current) - base == len(events), trainer.log()[-3000:]


def test_the_service_refuses_partial_and_tampered_versions_and_keeps_serving(
    trainer_env: dict[str, str], redis_client: redis.Redis, artifacts_dir: Path, tmp_path: Path
) -> None:
    send_events(redis_client, 20, seed=9)
    assert train_once(trainer_env).returncode == 0  # version 2
    serve = ServeProcess(env=trainer_env, log_path=tmp_path / "serve.log").start()
    try:
        serve.wait_ready()

        def serving() -> int | None:
            return httpx.get(f"{serve.url}/readyz", timeout=2).json().get("model_version")

        def failures() -> float:
            text = httpx.get(f"{serve.url}/metrics", timeout=2).text
            for line in text.splitlines():
                if line.startswith("veto_model_swap_failures_total"):
                    return float(line.split()[-1])
            raise AssertionError("no veto_model_swap_failures_total on /metrics")

        assert serving() == 2 and failures() == 0
        # A newer version, complete, then tampered: one byte of its vectors flipped.
        send_events(redis_client, 20, seed=10)
        crashed = train_once(trainer_env, fault="before_publish")  # written, not published
        assert crashed.returncode == FAULT_EXIT_CODE
        vectors = next(p for p in version_dir(artifacts_dir, 3).iterdir() if "vector" in p.name)
        raw = bytearray(vectors.read_bytes())
        raw[-1] ^= 0xFF
        vectors.write_bytes(bytes(raw))
        registry.publish(redis_client, 3)
        eventually(lambda: failures() >= 1, timeout=10, what="the tampered version refused")
        assert serving() == 2
        # A partial version: a number with no complete directory (a crash mid-export).
        registry.publish(redis_client, 4)
        eventually(lambda: failures() >= 2, timeout=10, what="the missing version refused")
        assert serving() == 2
        recs = httpx.get(f"{serve.url}/v1/users/crash1/recommendations?k=5", timeout=5)
        assert recs.status_code == 200 and recs.json()["model_version"] == 2
        assert serve.running, serve.log()
    finally:
        serve.stop()
