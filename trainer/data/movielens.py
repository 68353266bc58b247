"""MovieLens readers: 100K (``u.data`` + ``u.item``) and 1M (``ratings.dat`` + ``movies.dat``,
or the partial rating files of ``../shared/data/movielens-1m``).

Ratings are 1-5 stars, mapped to like / dislike / click by ``RatingMap``. The category of a
movie is its first genre ("unknown" counts as none).

The partial ML-1M files: ``ratings.users0001-2999.dat.gz`` has timestamps,
``ratings.users3000-6040.no-timestamp.dat.gz`` has none. Their users are disjoint, so order
only matters within a user: rows without a timestamp keep their file order and get
synthetic timestamps placed after the newest real one (max + 1 s, + 1 s per row). Such a
dataset reports ``has_timestamps=False`` (a temporal split would be meaningless for half of
it). ``ratings.pairs-all.dat.gz`` carries no ratings and is not read.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.dataset import Dataset
from trainer.data.textfile import (
    RatingMap,
    check_dataset_id,
    open_lines,
    parse_float,
    parse_int,
    require_file,
    sort_by_time,
)
from veto.errors import DatasetError
from veto.events import Interaction

LATIN1 = "latin-1"
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_PARTIAL_GLOB = "ratings.users*.dat*"


def _first_genre(genres: list[str]) -> str | None:
    named = [g for g in genres if g and g != "unknown"]
    return named[0] if named else None


def _read_100k_genres(directory: Path) -> tuple[str, ...]:
    path = directory / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    names = [line.split("|")[0] for _, line in open_lines(path, encoding=LATIN1) if line.strip()]
    return tuple(names) if len(names) == len(ML100K_GENRES) else ML100K_GENRES


def _read_100k_items(directory: Path) -> dict[str, str | None]:
    path = require_file(directory / "u.item")
    genres = _read_100k_genres(directory)
    catalog: dict[str, str | None] = {}
    for number, line in open_lines(path, encoding=LATIN1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(genres):
            msg = f"expected {5 + len(genres)} '|'-separated fields, got {len(fields)}"
            raise DatasetError(msg, path=str(path), line=number)
        item = check_dataset_id(fields[0], kind="item", path=path, line=number)
        flags = [parse_int(f, what="genre flag", path=path, line=number) for f in fields[5:]]
        if item in catalog:
            raise DatasetError(f"duplicate item {item}", path=str(path), line=number)
        catalog[item] = _first_genre([g for g, flag in zip(genres, flags, strict=True) if flag])
    if not catalog:
        raise DatasetError("no items", path=str(path))
    return catalog


def _read_ratings(
    path: Path,
    *,
    sep: str,
    catalog: dict[str, str | None],
    rating_map: RatingMap,
    with_timestamp: bool | None,
) -> tuple[list[Interaction], bool]:
    """Rows ``user SEP item SEP rating [SEP timestamp]``; ``with_timestamp=None`` takes the
    field count of the first row for the whole file. Rows without a timestamp get their
    row number as a provisional timestamp (rebased by the caller)."""
    out: list[Interaction] = []
    expected: int | None = None if with_timestamp is None else (4 if with_timestamp else 3)
    for number, line in open_lines(path, encoding=LATIN1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if expected is None and len(fields) in (3, 4):
            expected = len(fields)
        if len(fields) != expected:
            msg = f"expected {expected or '3 or 4'} fields separated by {sep!r}, got {len(fields)}"
            raise DatasetError(msg, path=str(path), line=number)
        user = check_dataset_id(fields[0], kind="user", path=path, line=number)
        item = check_dataset_id(fields[1], kind="item", path=path, line=number)
        if item not in catalog:
            raise DatasetError(f"item {item} is not in the movie list", path=str(path), line=number)
        stars = parse_float(fields[2], what="rating", path=path, line=number)
        kind = rating_map(stars, path=path, line=number)
        ts = (
            float(parse_int(fields[3], what="timestamp", path=path, line=number))
            if expected == 4
            else float(len(out))
        )
        out.append(Interaction(user, item, kind, ts))
    if not out:
        raise DatasetError("no ratings", path=str(path))
    return out, expected == 4


def load_ml100k(directory: Path, *, rating_map: RatingMap) -> Dataset:
    """MovieLens-100K from a directory holding ``u.data`` and ``u.item``."""
    catalog = _read_100k_items(directory)
    rows, _ = _read_ratings(
        require_file(directory / "u.data"),
        sep="\t",
        catalog=catalog,
        rating_map=rating_map,
        with_timestamp=True,
    )
    return Dataset(
        name="ml-100k",
        item_ids=list(catalog),
        categories=list(catalog.values()),
        interactions=sort_by_time(rows),
        has_timestamps=True,
    )


def _read_1m_movies(directory: Path) -> dict[str, str | None]:
    path = require_file(directory / "movies.dat")
    catalog: dict[str, str | None] = {}
    for number, line in open_lines(path, encoding=LATIN1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            msg = f"expected MovieID::Title::Genres, got {len(fields)} fields"
            raise DatasetError(msg, path=str(path), line=number)
        item = check_dataset_id(fields[0], kind="item", path=path, line=number)
        if item in catalog:
            raise DatasetError(f"duplicate movie {item}", path=str(path), line=number)
        catalog[item] = _first_genre(fields[2].split("|"))
    if not catalog:
        raise DatasetError("no movies", path=str(path))
    return catalog


def ml1m_rating_files(directory: Path) -> list[Path]:
    """``ratings.dat`` if present, else the partial files (sorted by name)."""
    whole = directory / "ratings.dat"
    if whole.is_file():
        return [whole]
    parts = sorted(p for p in directory.glob(_PARTIAL_GLOB) if p.is_file())
    if not parts:
        raise DatasetError(
            "no ratings.dat and no partial ratings.users*.dat[.gz] files", path=str(directory)
        )
    return parts


def load_ml1m(directory: Path, *, rating_map: RatingMap) -> Dataset:
    """MovieLens-1M from a directory with ``movies.dat`` and whole or partial ratings."""
    catalog = _read_1m_movies(directory)
    timed: list[Interaction] = []
    untimed: list[Interaction] = []
    for path in ml1m_rating_files(directory):
        rows, has_ts = _read_ratings(
            path, sep="::", catalog=catalog, rating_map=rating_map, with_timestamp=None
        )
        if has_ts:
            timed.extend(rows)
        else:
            untimed.extend(rows)
    # Rows without timestamps go after the newest real one, in file order.
    base = max((x.timestamp for x in timed), default=0.0) + 1.0
    rebased = [
        Interaction(x.user_id, x.item_id, x.type, base + float(i)) for i, x in enumerate(untimed)
    ]
    return Dataset(
        name="ml-1m",
        item_ids=list(catalog),
        categories=list(catalog.values()),
        interactions=sort_by_time(timed) + rebased,
        has_timestamps=not untimed,
    )
