"""Every Redis key and channel Veto uses, in one place.

A user's keys carry the hash tag of the feedback-stream partition the user belongs to,
``{p<N>}``, so a user's history, sets, dedupe keys and the stream entry of their event all
live in one Redis Cluster slot and one user's write is a single Lua transaction.

    veto:{p3}:feedback            stream    feedback log partition 3 (trainer consumer group)
    veto:{p3}:u:<user>:hist       list      recent history, newest first, HistoryEntry.encode()
    veto:{p3}:u:<user>:disliked   set       items the user disliked (never served to them)
    veto:{p3}:u:<user>:liked      set       items the user liked (hidden unless include_seen)
    veto:{p3}:u:<user>:decided    hash      item -> "<ts>|<type code>|<withdrawn ts>": the
                                            user's latest like / dislike / withdraw of it (by
                                            timestamp) and their latest withdraw of it
    veto:{p3}:u:<user>:events     hash      event id -> its stream entry id: what an erasure
                                            deletes (stream entries, dedupe markers)
    veto:{p3}:u:<user>|ev|<id>    string    dedupe marker of an event id, with a TTL
    veto:{p3}:erased              zset      user -> erasure time: users erased since the
                                            trainer last purged them (``veto.users``)
    veto:{p3}:pop:<yyyymmdd>      zset      likes per item that day, in this partition
    veto:model:current            string    the current model version (an integer)
    veto:config:partitions        string    the deployment's partition count (veto.partitions)
    veto:model:notify             channel   published to after the pointer changes

The catalog (``veto.items``) shares one hash tag, ``{catalog}``, so one batch of item writes
(records, the serving indexes, the change log and the generation) is one Lua transaction:

    veto:{catalog}:item:<item>    hash      an item's record: category, labels (JSON), hidden
    veto:{catalog}:categories     hash      item -> category, for the items that have one
    veto:{catalog}:withheld       hash      item -> "hidden" | "deleted": never served
    veto:{catalog}:log            stream    one entry per item write: item, state, category,
                                            generation (trimmed, approximately)
    veto:{catalog}:gen            string    the catalog generation: +1 per write, read with
                                            every recommendation batch's user state
"""

from __future__ import annotations

import zlib

PREFIX = "veto"
MODEL_POINTER = f"{PREFIX}:model:current"
MODEL_CHANNEL = f"{PREFIX}:model:notify"
PARTITIONS = f"{PREFIX}:config:partitions"
CONSUMER_GROUP = "trainer"
_CATALOG = f"{PREFIX}:{{catalog}}"
CATALOG_GENERATION = f"{_CATALOG}:gen"
CATALOG_LOG = f"{_CATALOG}:log"
CATALOG_WITHHELD = f"{_CATALOG}:withheld"
CATALOG_CATEGORIES = f"{_CATALOG}:categories"


def partition_of(user_id: str, partitions: int) -> int:
    """The stream partition (and hash tag) of a user: stable across processes and runs."""
    return zlib.crc32(user_id.encode()) % partitions


def _tag(partition: int) -> str:
    return f"{PREFIX}:{{p{partition}}}"


def stream(partition: int) -> str:
    return f"{_tag(partition)}:feedback"


def streams(partitions: int) -> list[str]:
    return [stream(p) for p in range(partitions)]


def popular(partition: int, day: str) -> str:
    return f"{_tag(partition)}:pop:{day}"


def erased(partition: int) -> str:
    """Users of a partition erased since the trainer last purged them (same slot as theirs)."""
    return f"{_tag(partition)}:erased"


def item(item_id: str) -> str:
    """The record of a catalog item; ``item_id`` must be a valid id (``veto.ids``)."""
    return f"{_CATALOG}:item:{item_id}"


class UserKeys:
    """The keys of one user, all in that user's partition slot."""

    __slots__ = ("decided", "disliked", "events", "history", "liked", "partition", "user_id")

    def __init__(self, user_id: str, partitions: int) -> None:
        self.user_id = user_id
        self.partition = partition_of(user_id, partitions)
        base = f"{_tag(self.partition)}:u:{user_id}"
        self.history = f"{base}:hist"
        self.disliked = f"{base}:disliked"
        self.liked = f"{base}:liked"
        self.decided = f"{base}:decided"
        self.events = f"{base}:events"

    def dedupe(self, event_id: str) -> str:
        # "|" cannot occur in an id (veto.ids), so no (user, event id) pair can produce
        # another user's dedupe key or history/set key, as ":" (allowed in ids) could.
        return f"{_tag(self.partition)}:u:{self.user_id}|ev|{event_id}"

    @property
    def stream(self) -> str:
        return stream(self.partition)

    @property
    def erased(self) -> str:
        return erased(self.partition)

    def state(self) -> list[str]:
        """Every key holding this user's own state (not the shared stream and erased set)."""
        return [self.history, self.liked, self.disliked, self.decided, self.events]
