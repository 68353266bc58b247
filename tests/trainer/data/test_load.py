"""The dataset readers on tiny generated files: mapping, ordering and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.trainer.data.files import (
    write_csv,
    write_kuairand,
    write_lines,
    write_ml1m,
    write_ml1m_partial,
    write_ml100k,
)
from trainer.data.load import load_dataset
from veto.errors import ConfigError, DatasetError
from veto.events import EventType

LIKE, DISLIKE, CLICK = EventType.LIKE, EventType.DISLIKE, EventType.CLICK


def test_ml100k_maps_stars_by_threshold_and_reads_genres(tmp_path: Path) -> None:
    ds = load_dataset("ml-100k", write_ml100k(tmp_path / "ml"))
    assert ds.item_ids == ["1", "2", "3", "4"]
    assert ds.categories == ["Action", "Action", "Comedy", "Drama"]
    assert [x.type for x in ds.interactions] == [LIKE, LIKE, DISLIKE, LIKE, CLICK, DISLIKE]
    assert ds.has_timestamps


def test_thresholds_are_configurable(tmp_path: Path) -> None:
    ds = load_dataset("ml-100k", write_ml100k(tmp_path / "ml"), like_min=5, dislike_max=3)
    assert [x.type for x in ds.interactions] == [LIKE, CLICK, DISLIKE, LIKE, DISLIKE, DISLIKE]


def test_ml1m_full_and_partial_files(tmp_path: Path) -> None:
    full = load_dataset("ml-1m", write_ml1m(tmp_path / "full"))
    assert full.categories[0] == "Animation" and len(full.interactions) == 6
    partial = load_dataset("ml-1m", write_ml1m_partial(tmp_path / "partial"))
    assert not partial.has_timestamps
    users = [x.user_id for x in partial.interactions]
    assert users == ["1", "1", "3000", "3000"]  # un-timestamped rows after, in file order
    assert [x.item_id for x in partial.interactions[2:]] == ["2", "4"]


def test_kuairand_labels_are_like_and_dislike(tmp_path: Path) -> None:
    ds = load_dataset("kuairand", write_kuairand(tmp_path / "k.tsv"))
    assert [(x.user_id, x.item_id, x.type) for x in ds.interactions] == [
        ("1", "10", LIKE),
        ("1", "11", DISLIKE),
        ("2", "10", LIKE),
    ]


def test_csv_types_and_categories(tmp_path: Path) -> None:
    ds = load_dataset("csv", write_csv(tmp_path / "f.csv"))
    assert ds.item_ids == ["x", "y", "z"]
    assert ds.categories == ["red", "blue", None]
    assert [x.type for x in ds.interactions][:3] == [LIKE, DISLIKE, EventType.SKIP]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (["1\t1\t5\t100", "1\t99\t5\t101"], 2, "99"),  # a movie not in u.item
        (["1\t1\t5\t100", "1\t2\t7\t101"], 2, "rating"),  # out of range
        (["1\t1\tfive\t100"], 1, "five"),  # unparsable
        (["1\t1\t5"], 1, None),  # missing column
    ],
)
def test_bad_ml100k_rows_name_file_and_line(
    tmp_path: Path, rows: list[str], line: int, message: str | None
) -> None:
    directory = write_ml100k(tmp_path / "ml", ratings=rows)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("ml-100k", directory)
    assert info.value.line == line
    assert info.value.path.endswith("u.data")


def test_bad_ml1m_unknown_movie(tmp_path: Path) -> None:
    directory = write_ml1m(tmp_path / "ml", ratings=["1::1::5::1", "1::42::4::2"])
    with pytest.raises(DatasetError) as info:
        load_dataset("ml-1m", directory)
    assert info.value.line == 2 and "ratings.dat" in info.value.path


def test_bad_kuairand_columns_and_labels(tmp_path: Path) -> None:
    wrong = tmp_path / "w.tsv"
    wrong.write_text("user\tvideo\tlabel\n1\t2\t1\n")
    with pytest.raises(DatasetError, match="video_id"):
        load_dataset("kuairand", wrong)
    with pytest.raises(DatasetError) as info:
        load_dataset("kuairand", write_kuairand(tmp_path / "k.tsv", rows=["1\t2\td\t3\t100"]))
    assert info.value.line == 2


def test_empty_inputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_dataset("csv", write_csv(tmp_path / "e.csv", rows=[]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError):
        load_dataset("csv", empty)


def test_csv_unknown_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("csv", write_csv(tmp_path / "f.csv", rows=["a,x,meh,1,"]))
    assert info.value.line == 2


def test_unknown_dataset_or_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_dataset("nope", tmp_path)
    with pytest.raises(ConfigError):
        load_dataset("ml-1m", None)


def test_csv_without_a_timestamp_column_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "paper.csv"
    path.write_text("user,item,rating\nb,z,9\na,x,1\nb,x,5\n\na,y,10\n")
    ds = load_dataset("csv", path, like_min=8, dislike_max=2)
    assert not ds.has_timestamps
    assert [(x.user_id, x.item_id, x.type) for x in ds.interactions] == [
        ("b", "z", LIKE),
        ("a", "x", DISLIKE),
        ("b", "x", CLICK),
        ("a", "y", LIKE),
    ]
    assert [x.timestamp for x in ds.interactions] == [0.0, 1.0, 2.0, 3.0]
    assert ds.item_ids == ["z", "x", "y"]


def test_csv_without_a_timestamp_column_reads_types_and_categories(tmp_path: Path) -> None:
    path = tmp_path / "typed.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("category,item,user,type\nred,x,a,like\n,y,a,skip\nblue,y,b,dislike\n")
    ds = load_dataset("csv", path)
    assert not ds.has_timestamps
    assert [x.type for x in ds.interactions] == [LIKE, EventType.SKIP, DISLIKE]
    assert ds.categories == ["red", "blue"]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("a,x\n", 2, "expected 3 fields"),  # too few fields
        ("a,x,like\na b,y,like\n", 3, "invalid user id"),
        ("a,x{1},like\n", 2, "invalid item id"),
        ("a,x,meh\n", 2, "meh"),
    ],
)
def test_bad_rows_of_a_csv_without_timestamps_name_the_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,type\n" + body)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("csv", path)
    assert info.value.line == line and info.value.path == str(path)


def test_csv_needs_user_and_item_columns(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.csv", ["0 1 2", "1 2"])
    with pytest.raises(DatasetError, match="header lacks column"):
        load_dataset("csv", path)


@pytest.mark.parametrize("gz", [False, True])
def test_lines_every_item_is_a_like_in_file_order(tmp_path: Path, gz: bool) -> None:
    lines = ["0 10 11 12", "", "1\t11   10", "2", "0 13"]
    ds = load_dataset("lines", write_lines(tmp_path / "train.txt", lines, gz=gz))
    assert ds.name == "lines" and not ds.has_timestamps
    assert [(x.user_id, x.item_id) for x in ds.interactions] == [
        ("0", "10"), ("0", "11"), ("0", "12"), ("1", "11"), ("1", "10"), ("0", "13"),
    ]  # fmt: skip
    assert {x.type for x in ds.interactions} == {LIKE}
    assert [x.timestamp for x in ds.interactions] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert ds.item_ids == ["10", "11", "12", "13"]
    assert ds.categories == [None] * 4
    assert ds.user_ids == ["0", "1"]  # user 2 has no items and contributes nothing


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["0 1 2", "1 2 x|y"], 2, "invalid item id 'x|y'"),
        (["0 1", "", "u{1} 2"], 3, "invalid user id"),
        (["user,item,type", "a,x,like"], 1, "invalid user id"),  # a CSV given as lines
    ],
)
def test_bad_lines_name_file_and_line(
    tmp_path: Path, lines: list[str], line: int, message: str
) -> None:
    path = write_lines(tmp_path / "train.txt", lines)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("lines", path)
    assert info.value.line == line and info.value.path == str(path)


def test_lines_without_any_item_or_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no interactions"):
        load_dataset("lines", write_lines(tmp_path / "users.txt", ["0", "", "1"]))
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("lines", tmp_path)
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset("lines", tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="needs a path"):
        load_dataset("lines", None)


def test_synthetic_catalog_size(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", None, items=300)
    assert len(ds.item_ids) == 300 and ds.interactions
