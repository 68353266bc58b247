"""Reading feedback through the trainer's consumer group on every partition stream.

Delivery is at-least-once: entries are acked only after the version trained on them is
published. A restarted trainer first re-reads its own pending entries (id 0), then claims
entries another consumer left pending for too long (XAUTOCLAIM), then reads new ones (>).

On one Redis every partition is read by one XREADGROUP. On a Redis Cluster the partitions'
streams live in different slots, which one command cannot span: each is read by its own
XREADGROUP, all in one pipeline (redis-py sends each master its share at once), and a wait
for new entries polls that pipeline every ``CLUSTER_POLL_SECONDS`` instead of blocking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from veto import keys
from veto.connection import Client, is_cluster
from veto.errors import StoreUnavailable
from veto.events import FeedbackEvent

CLUSTER_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Entry:
    """One stream entry; ``event`` is None when its fields do not parse."""

    stream: str
    partition: int
    entry_id: str
    event: FeedbackEvent | None


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable (ms, seq) pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _parse(stream: str, partition: int, entry_id: str, fields: dict[str, str]) -> Entry:
    try:
        event: FeedbackEvent | None = FeedbackEvent.from_fields(fields)
    except (KeyError, ValueError):
        event = None
    return Entry(stream, partition, entry_id, event)


class FeedbackReader:
    """The trainer's side of the consumer group (client with decode_responses=True)."""

    def __init__(
        self, client: Client, *, partitions: int, consumer: str, claim_idle_ms: int
    ) -> None:
        self.client = client
        self.streams = keys.streams(partitions)
        self.partition = {s: p for p, s in enumerate(self.streams)}
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms

    def ensure_groups(self) -> None:
        """Create the group on every partition (from the start of the stream) if missing."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, keys.CONSUMER_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise StoreUnavailable(f"cannot create the consumer group: {exc}") from exc
            except redis.RedisError as exc:
                raise StoreUnavailable(f"cannot create the consumer group: {exc}") from exc

    def _read(self, ids: dict[str, str], *, count: int, block_ms: int | None) -> list[Entry]:
        reply: Any
        try:
            if is_cluster(self.client):
                reply = self._read_each(ids, count=count, block_ms=block_ms)
            else:
                reply = self.client.xreadgroup(
                    keys.CONSUMER_GROUP,
                    self.consumer,
                    streams=ids,  # type: ignore[arg-type]
                    count=count,
                    block=block_ms,
                )
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot read feedback: {exc}") from exc
        out: list[Entry] = []
        for stream, messages in reply or []:
            for entry_id, fields in messages:
                if fields is None:  # deleted while pending
                    continue
                out.append(_parse(stream, self.partition[stream], entry_id, fields))
        return out

    def _read_each(self, ids: dict[str, str], *, count: int, block_ms: int | None) -> list[Any]:
        """XREADGROUP per stream in one pipeline (a cluster), polled until ``block_ms``."""
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            pipe = self.client.pipeline(transaction=False)
            for stream, start in ids.items():
                pipe.xreadgroup(
                    keys.CONSUMER_GROUP, self.consumer, streams={stream: start}, count=count
                )
            reply = [row for rows in pipe.execute() for row in rows or []]
            if reply or block_ms is None or time.monotonic() >= deadline:
                return reply
            time.sleep(min(CLUSTER_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def own_pending(self, *, count: int) -> list[Entry]:
        """This consumer's delivered-but-unacked entries (at most ``count`` per stream)."""
        return self._read(dict.fromkeys(self.streams, "0"), count=count, block_ms=None)

    def claim_stale(self, *, count: int) -> list[Entry]:
        """Up to ``count`` entries another consumer left pending for ``claim_idle_ms``."""
        entries: list[Entry] = []
        for stream in self.streams:
            if len(entries) >= count:
                break
            try:
                claim_reply: Any = self.client.xautoclaim(
                    stream,
                    keys.CONSUMER_GROUP,
                    self.consumer,
                    min_idle_time=self.claim_idle_ms,
                    start_id="0-0",
                    count=count - len(entries),
                )
                claimed = claim_reply[1]
            except redis.RedisError as exc:
                raise StoreUnavailable(f"cannot claim pending feedback: {exc}") from exc
            part = self.partition[stream]
            entries += [_parse(stream, part, i, f) for i, f in claimed if f is not None]
        return entries

    def new(self, *, count: int, block_ms: int | None) -> list[Entry]:
        """Entries never delivered to the group, waiting up to ``block_ms`` for the first."""
        return self._read(dict.fromkeys(self.streams, ">"), count=count, block_ms=block_ms)

    def ack(self, entries: list[Entry]) -> None:
        """Ack entries (after the version trained on them is published)."""
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.entry_id)
        try:
            pipe = self.client.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xack(stream, keys.CONSUMER_GROUP, *ids)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot ack feedback: {exc}") from exc

    def backlog(self) -> int:
        """Events not yet trained on: the group's lag plus its pending entries."""
        total = 0
        try:
            for stream in self.streams:
                groups: Any = self.client.xinfo_groups(stream)
                for group in groups:
                    if group["name"] == keys.CONSUMER_GROUP:
                        total += int(group.get("pending") or 0) + int(group.get("lag") or 0)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot read the consumer group: {exc}") from exc
        return total
