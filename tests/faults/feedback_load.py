"""A feedback load for the fault tests: a thread posting small batches of events with unique
event ids and explicit timestamps, recording which events were acknowledged (200), and the
checks that every acknowledged event is in the streams exactly once and in its user's history."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.processes import veto_env
from tests.version_factory import small_world, write_demo_version
from veto import keys, registry
from veto.cli.redis_server import RedisServer
from veto.connection import connect_url
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys

_TYPES = ("like", "dislike", "click", "skip")


@dataclass(frozen=True)
class SentEvent:
    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: float

    def body(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "timestamp": self.timestamp,
        }

    def history_entry(self) -> str:
        kind = EventType[self.type.upper()]
        return HistoryEntry(item_id=self.item_id, type=kind, timestamp=self.timestamp).encode()


@dataclass
class FeedbackLoad:
    """Posts batches of ``batch_size`` events until stopped. ``targets()`` gives the base
    URLs to try in order: on a connection error the same batch (same event ids) goes to the
    next one (fail-over); other answers are recorded and the load moves on."""

    targets: Callable[[], Sequence[str]]
    item_ids: Sequence[str]
    api_key: str | None = None
    n_users: int = 40
    batch_size: int = 5
    pause: float = 0.005
    acked: list[SentEvent] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: set[str] = field(default_factory=set)
    failovers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FeedbackLoad:
        self._thread = threading.Thread(target=self._run, name="feedback-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the load thread did not stop"

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        counter = itertools.count()
        base_ts = time.time() - 3600
        with httpx.Client(timeout=3.0, headers=headers) as client:
            for batch_no in itertools.count():
                if self._stop.is_set():
                    return
                batch = []
                for j in range(self.batch_size):
                    n = next(counter)
                    batch.append(
                        SentEvent(
                            event_id=f"ev-{batch_no}-{j}",
                            user_id=f"user{n % self.n_users}",
                            item_id=self.item_ids[(n * 7) % len(self.item_ids)],
                            type=_TYPES[n % len(_TYPES)],
                            # Unique per event: the history entry identifies the event.
                            timestamp=base_ts + n * 0.001,
                        )
                    )
                self._post(client, batch)
                time.sleep(self.pause)

    def _post(self, client: httpx.Client, batch: list[SentEvent]) -> None:
        body = {"events": [e.body() for e in batch]}
        # Fail over on connection errors, retrying the same batch, until stopped.
        while not self._stop.is_set():
            for target in self.targets():
                try:
                    resp = client.post(f"{target}/v1/feedback", json=body)
                except httpx.TransportError:
                    with self._lock:
                        self.failovers += 1
                    continue
                with self._lock:
                    self.statuses[resp.status_code] += 1
                    if resp.status_code == 200:
                        self.acked.extend(batch)
                    if "Retry-After" in resp.headers:
                        self.retry_after.add(resp.headers["Retry-After"])
                return
            time.sleep(0.05)


def stream_event_ids(client: redis.Redis, partitions: int) -> Counter[str]:
    """How many times each event id occurs across all partition streams."""
    found: Counter[str] = Counter()
    for name in keys.streams(partitions):
        for _, fields in client.xrange(name):
            found[fields["event_id"]] += 1
    return found


def assert_all_acked_stored(
    client: redis.Redis, acked: Sequence[SentEvent], *, partitions: int
) -> None:
    """Every acknowledged event is in the streams exactly once and in its user's history."""
    assert acked, "no event was acknowledged: the load did not run"
    in_streams = stream_event_ids(client, partitions)
    missing = [e.event_id for e in acked if in_streams[e.event_id] == 0]
    assert not missing, f"{len(missing)} acknowledged events lost from the streams: {missing[:5]}"
    doubled = [e.event_id for e in acked if in_streams[e.event_id] > 1]
    assert not doubled, f"acknowledged events stored more than once: {doubled[:5]}"
    histories: dict[str, set[str]] = {}
    for e in acked:
        if e.user_id not in histories:
            hist = client.lrange(UserKeys(e.user_id, partitions).history, 0, -1)
            histories[e.user_id] = set(hist)
    lost = [e.event_id for e in acked if e.history_entry() not in histories[e.user_id]]
    assert not lost, f"{len(lost)} acknowledged events missing from histories: {lost[:5]}"


@dataclass(frozen=True)
class DurableSetup:
    """A durable Redis with version 1 of a small catalog published, and the env to serve it."""

    server: RedisServer
    item_ids: list[str]
    env: dict[str, str]


def durable_setup(tmp_path: Path, *, seed: int, partitions: int, **veto: str) -> DurableSetup:
    """Redis with ``appendfsync always`` (every acknowledged write is on disk), version 1
    published, and a ``veto serve`` env keeping every event in the histories."""
    server = RedisServer(data_dir=tmp_path / "redis", appendfsync="always").start()
    item_ids, env = published_version(
        tmp_path, server.url, seed=seed, partitions=partitions, **veto
    )
    return DurableSetup(server, item_ids, env)


def published_version(
    tmp_path: Path, redis_url: str, *, seed: int, partitions: int, **veto: str
) -> tuple[list[str], dict[str, str]]:
    """Version 1 of a 200-item world written under ``tmp_path`` and published on
    ``redis_url`` (one Redis or a cluster); its item ids and the ``veto serve`` env."""
    world = small_world(n_items=200, seed=seed)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    write_demo_version(artifacts, 1, world=world)
    client = connect_url(redis_url)
    registry.publish(client, 1)
    client.close()
    env = veto_env(
        redis_url=redis_url,
        artifacts_dir=str(artifacts),
        stream_partitions=str(partitions),
        history_len="1000",  # nothing trimmed: every acknowledged event stays checkable
        responsiveness_sample_rate="0",
        **veto,
    )
    return list(world.item_ids), env
