"""veto.catalog: a version's ids and categories in compact arrays, looked up exactly."""

from __future__ import annotations

import numpy as np

from veto.catalog import Categories, ItemIds


def test_ids_round_trip_by_row_and_by_id() -> None:
    raw = ["b", "a:1", "zz-9", "é", "a"]
    ids = ItemIds(raw)
    assert len(ids) == 5 and ids.tolist() == raw and list(ids) == raw
    assert [ids[row] for row in range(5)] == raw
    assert ids.names(np.array([4, 0])) == ["a", "b"]
    assert ids.rows(raw).tolist() == [0, 1, 2, 3, 4]
    assert ids.get("zz-9") == 2 and "é" in ids


def test_unknown_ids_are_minus_one_including_prefixes_and_longer_ids() -> None:
    ids = ItemIds(["i1", "i10", "i2"])
    # "i100" is longer than every stored id: truncated to the table's width it would be
    # "i10", a stored id; it must still be unknown.
    assert ids.rows(["i100", "i", "", "i3", "i10"]).tolist() == [-1, -1, -1, -1, 1]
    assert ids.get("i100") is None and "i100" not in ids and 1 not in ids


def test_an_empty_catalog_knows_nothing() -> None:
    ids = ItemIds([])
    assert len(ids) == 0 and ids.rows(["a"]).tolist() == [-1] and ids.rows([]).size == 0


def test_categories_are_codes_with_rows_per_name() -> None:
    cats = Categories(["red", None, "blue", "red", None])
    assert cats.codes.tolist() == [0, -1, 1, 0, -1] and cats.names == ("red", "blue")
    assert cats.tolist() == ["red", None, "blue", "red", None]
    assert cats[2] == "blue" and cats[1] is None and len(cats) == 5
    by_name = cats.rows_by_name()
    assert {name: rows.tolist() for name, rows in by_name.items()} == {"red": [0, 3], "blue": [2]}
