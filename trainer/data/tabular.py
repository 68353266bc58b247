"""Readers of tables with a header row: KuaiRand-style TSV and the generic CSV.

KuaiRand (``user_id, video_id, label, time_ms`` among other columns, tab-separated, plain or
gzip): label 1 = like, 0 = hate (dislike). No categories.

Generic CSV (``user,item,rating|type[,timestamp][,category]``, comma-separated, plain or
gzip, columns in any order): ``type`` is like / dislike / click / skip; a numeric ``rating``
(0-10) is mapped by the like / dislike thresholds. Without a ``timestamp`` column, or where
every ``timestamp`` is empty, file order is used instead (``has_timestamps=False``), so a
paper's split loads as published; a mix of empty and set timestamps is an error. An item's
category is its first non-empty one; two different categories for one item are an error.
The catalog is every item of the file, in order of first appearance.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from trainer.data.dataset import Dataset
from trainer.data.textfile import (
    RatingMap,
    check_dataset_id,
    open_lines,
    parse_float,
    parse_int,
    sort_by_time,
)
from veto.errors import DatasetError
from veto.events import EventType, Interaction

KUAIRAND_COLUMNS = ("user_id", "video_id", "label", "time_ms")
CSV_RATING_RANGE = (0.0, 10.0)
_SUFFIXES = (".tsv", ".tsv.gz", ".csv", ".csv.gz", ".txt", ".txt.gz")


def resolve_table(path: Path) -> Path:
    """The file itself, or the single table file in a directory."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError("no such file or directory", path=str(path))
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        msg = f"expected exactly one .tsv/.csv[.gz] file in the directory, found: {names}"
        raise DatasetError(msg, path=str(path))
    return found[0]


def _rows(path: Path, *, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line, the header included."""
    for number, line in open_lines(path):
        if not line.strip():
            continue
        yield number, next(csv.reader([line], delimiter=delimiter))


def _header(
    rows: Iterator[tuple[int, list[str]]], path: Path, required: tuple[str, ...]
) -> dict[str, int]:
    try:
        number, names = next(rows)
    except StopIteration:
        raise DatasetError("empty file: no header row", path=str(path)) from None
    columns = {name.strip(): i for i, name in enumerate(names)}
    missing = [c for c in required if c not in columns]
    if missing:
        msg = f"header lacks column(s) {', '.join(missing)} (has: {', '.join(columns)})"
        raise DatasetError(msg, path=str(path), line=number)
    return columns


def _field(fields: list[str], index: int, *, width: int, path: Path, line: int) -> str:
    if len(fields) != width:
        msg = f"expected {width} fields like the header, got {len(fields)}"
        raise DatasetError(msg, path=str(path), line=line)
    return fields[index]


def load_kuairand(path: Path) -> Dataset:
    """A KuaiRand-style TSV with explicit like (1) / hate (0) labels."""
    path = resolve_table(path)
    rows = _rows(path, delimiter="\t")
    cols = _header(rows, path, KUAIRAND_COLUMNS)
    width = len(cols)
    items: dict[str, None] = {}
    out: list[Interaction] = []
    for number, fields in rows:
        get = {
            c: _field(fields, cols[c], width=width, path=path, line=number)
            for c in KUAIRAND_COLUMNS
        }
        user = check_dataset_id(get["user_id"], kind="user", path=path, line=number)
        item = check_dataset_id(get["video_id"], kind="item", path=path, line=number)
        label = parse_int(get["label"], what="label", path=path, line=number)
        if label not in (0, 1):
            raise DatasetError(f"label {label} is not 0 or 1", path=str(path), line=number)
        ms = parse_int(get["time_ms"], what="time_ms", path=path, line=number)
        kind = EventType.LIKE if label == 1 else EventType.DISLIKE
        items.setdefault(item, None)
        out.append(Interaction(user, item, kind, ms / 1000.0))
    if not out:
        raise DatasetError("no rows after the header", path=str(path))
    return Dataset(
        name="kuairand",
        item_ids=list(items),
        categories=[None] * len(items),
        interactions=sort_by_time(out),
        has_timestamps=True,
    )


def _csv_kind(fields: dict[str, str], *, rating_map: RatingMap, path: Path, line: int) -> EventType:
    if "type" in fields:
        try:
            return EventType.parse(fields["type"].strip())
        except KeyError:
            msg = f"type {fields['type'][:20]!r} is not like, dislike, click or skip"
            raise DatasetError(msg, path=str(path), line=line) from None
    rating = parse_float(fields["rating"], what="rating", path=path, line=line)
    return rating_map(rating, path=path, line=line)


def load_csv(path: Path, *, like_min: float, dislike_max: float) -> Dataset:
    """The generic CSV: ``user,item,rating|type[,timestamp][,category]`` with a header."""
    path = resolve_table(path)
    low, high = CSV_RATING_RANGE
    rating_map = RatingMap(like_min=like_min, dislike_max=dislike_max, low=low, high=high)
    rows = _rows(path, delimiter=",")
    cols = _header(rows, path, ("user", "item"))
    if "type" not in cols and "rating" not in cols:
        raise DatasetError("header needs a 'rating' or a 'type' column", path=str(path), line=1)
    optional: tuple[str, ...] = ("user", "item", "rating", "type", "timestamp", "category")
    wanted = [c for c in optional if c in cols]
    width = len(cols)
    catalog: dict[str, str | None] = {}
    out: list[Interaction] = []
    timed: bool | None = None
    for number, raw in rows:
        fields: dict[str, str] = {
            c: _field(raw, cols[c], width=width, path=path, line=number) for c in wanted
        }
        user = check_dataset_id(fields["user"].strip(), kind="user", path=path, line=number)
        item = check_dataset_id(fields["item"].strip(), kind="item", path=path, line=number)
        kind = _csv_kind(fields, rating_map=rating_map, path=path, line=number)
        has_ts = bool(fields.get("timestamp", "").strip())
        if timed is None:
            timed = has_ts
        elif timed != has_ts:
            msg = "timestamp is empty on some rows and set on others"
            raise DatasetError(msg, path=str(path), line=number)
        ts = (
            parse_float(fields["timestamp"], what="timestamp", path=path, line=number)
            if has_ts
            else float(len(out))
        )
        category = fields.get("category", "").strip() or None
        known = catalog.setdefault(item, category)
        if category is not None and known is None:
            catalog[item] = category
        elif category is not None and known != category:
            msg = f"item {item} has category {category!r} here and {known!r} earlier"
            raise DatasetError(msg, path=str(path), line=number)
        out.append(Interaction(user, item, kind, ts))
    if not out:
        raise DatasetError("no rows after the header", path=str(path))
    return Dataset(
        name="csv",
        item_ids=list(catalog),
        categories=list(catalog.values()),
        interactions=sort_by_time(out),
        has_timestamps=bool(timed),
    )
