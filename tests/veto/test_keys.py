"""veto.keys, veto.ids, veto.events: key layout, id validation and the event wire format."""

from __future__ import annotations

import re
import zlib

import pytest

from veto import keys
from veto.errors import InvalidInput
from veto.events import N_EVENT_TYPES, EventType, FeedbackEvent, HistoryEntry, is_encoded
from veto.ids import MAX_ID_LENGTH, check_id, is_valid_id

_TAG = re.compile(r"\{([^}]*)\}")


def _hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the first {...} group."""
    match = _TAG.search(key)
    assert match, f"{key} has no hash tag"
    return match.group(1)


@pytest.mark.parametrize("user_id", ["u1", "alice@example.com", "x" * MAX_ID_LENGTH, "a:b.c-d_e"])
@pytest.mark.parametrize("partitions", [1, 8, 1024])
def test_user_keys_share_their_partition_stream_tag(user_id: str, partitions: int) -> None:
    uk = keys.UserKeys(user_id, partitions)
    tag = _hash_tag(uk.stream)
    assert tag == f"p{keys.partition_of(user_id, partitions)}"
    assert uk.stream == keys.stream(uk.partition)
    for key in (*uk.state(), uk.dedupe("ev-1"), uk.erased):
        assert _hash_tag(key) == tag
        assert key.startswith(keys.PREFIX + ":")
    assert len({*uk.state(), uk.dedupe("ev-1"), uk.stream, uk.erased}) == 8


def test_partition_is_crc32_mod_partitions() -> None:
    for user in ("u0", "u1", "someone"):
        assert keys.partition_of(user, 8) == zlib.crc32(user.encode()) % 8
        assert 0 <= keys.partition_of(user, 3) < 3


def test_partitions_spread_users() -> None:
    used = {keys.partition_of(f"u{i}", 8) for i in range(200)}
    assert used == set(range(8))


def test_streams_and_popular_keys() -> None:
    assert keys.streams(3) == [keys.stream(0), keys.stream(1), keys.stream(2)]
    assert len(set(keys.streams(16))) == 16
    assert _hash_tag(keys.popular(5, "20240101")) == "p5"
    assert keys.popular(5, "20240101") != keys.popular(5, "20240102")


def _all_keys(user_id: str, event_id: str) -> set[str]:
    uk = keys.UserKeys(user_id, 1)
    return {*uk.state(), uk.dedupe(event_id)}


@pytest.mark.parametrize(
    ("user_a", "event_a", "user_b", "event_b"),
    [
        ("a", "hist", "a:ev", "x"),  # a's dedupe key vs a:ev's history key
        ("a", "x:hist", "a:ev:x", "y"),
        ("a", "b:ev:c", "a:ev:b", "c"),  # dedupe vs dedupe of another user
        ("a", "x", "a:hist", "x"),
    ],
)
def test_keys_of_different_users_never_collide(
    user_a: str, event_a: str, user_b: str, event_b: str
) -> None:
    # ":" is allowed in ids, so a crafted id must not reach another user's keys.
    for value in (user_a, event_a, user_b, event_b):
        assert is_valid_id(value)
    assert _all_keys(user_a, event_a).isdisjoint(_all_keys(user_b, event_b))


@pytest.mark.parametrize("value", ["u1", "A-b_c.d:e@f", "x" * MAX_ID_LENGTH, "0"])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)
    assert check_id(value, kind="user") == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * (MAX_ID_LENGTH + 1), "a b", "a{b", "a}b", "a|b", "a\nb", "é", "a/b", "a\x00"],
)
def test_invalid_ids_are_refused_with_their_kind(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidInput, match="invalid item id"):
        check_id(value, kind="item")


def test_feedback_event_fields_round_trip() -> None:
    event = FeedbackEvent(
        event_id="e1",
        user_id="u1",
        item_id="i9",
        type=EventType.DISLIKE,
        timestamp=1_700_000_000.123456,
        ingest_time=1_700_000_001.5,
    )
    fields = event.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    assert fields["type"] == "dislike"
    assert FeedbackEvent.from_fields(fields) == event


def test_history_entry_round_trip() -> None:
    entry = HistoryEntry(item_id="i:42", type=EventType.SKIP, timestamp=12.25)
    assert HistoryEntry.decode(entry.encode()) == entry


def test_event_type_codes_are_fixed() -> None:
    # The integers are rows of the encoder's type tables: reordering would corrupt models.
    assert [(t.name, int(t)) for t in EventType] == [
        ("LIKE", 0),
        ("DISLIKE", 1),
        ("CLICK", 2),
        ("SKIP", 3),
        ("WITHDRAW", 4),
    ]
    # WITHDRAW has no row: the tables of every version keep 4, so old versions still load.
    assert N_EVENT_TYPES == 4 and not is_encoded(EventType.WITHDRAW)
    assert all(is_encoded(t) for t in EventType if t != EventType.WITHDRAW)
    assert EventType.parse("Dislike") is EventType.DISLIKE
    with pytest.raises(KeyError):
        EventType.parse("love")


def test_catalog_keys_share_one_hash_tag_and_no_user_key() -> None:
    catalog = [
        keys.item("i1"),
        keys.item("a:b"),
        keys.CATALOG_GENERATION,
        keys.CATALOG_LOG,
        keys.CATALOG_WITHHELD,
        keys.CATALOG_CATEGORIES,
    ]
    assert {_hash_tag(k) for k in catalog} == {"catalog"}  # one Lua transaction per write
    assert len(set(catalog)) == len(catalog)
    assert keys.item("i1") != keys.item("i2")
    # No item record can be another catalog key, whatever its (valid) id.
    assert all(not k.startswith(keys.item("")) for k in catalog[2:])
