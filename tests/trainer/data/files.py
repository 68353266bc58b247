"""Tiny dataset files in each supported format, generated per test (never the licensed data)."""

from __future__ import annotations

import gzip
from pathlib import Path

# (user, item, stars, timestamp): u1 likes 1 and 2, dislikes 3; u2 likes 3, is neutral on 1.
RATINGS = [
    ("1", "1", 5, 100),
    ("1", "2", 4, 101),
    ("1", "3", 1, 102),
    ("2", "3", 5, 103),
    ("2", "1", 3, 104),
    ("2", "4", 2, 105),
]
GENRES_100K = 19


def write_ml100k(directory: Path, *, ratings: list[str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = ratings if ratings is not None else [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in RATINGS]
    (directory / "u.data").write_text("\n".join(rows) + "\n")
    items = []
    for item, genre in (("1", 1), ("2", 1), ("3", 5), ("4", 8)):
        flags = ["0"] * GENRES_100K
        flags[genre] = "1"
        items.append(
            "|".join([item, f"Movie {item} (1995)", "01-Jan-1995", "", "http://x", *flags])
        )
    (directory / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    return directory


def write_ml1m(directory: Path, *, ratings: list[str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = ratings if ratings is not None else [f"{u}::{i}::{r}::{t}" for u, i, r, t in RATINGS]
    (directory / "ratings.dat").write_text("\n".join(rows) + "\n")
    movies = ["1::Toy Story (1995)::Animation|Comedy", "2::Heat (1995)::Action|Crime"]
    movies += ["3::Café (1995)::Drama", "4::Other (1996)::Comedy"]
    (directory / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return directory


def write_ml1m_partial(directory: Path) -> Path:
    """Movies plus the two partial rating files: with and without timestamps."""
    write_ml1m(directory)
    (directory / "ratings.dat").unlink()
    with gzip.open(directory / "ratings.users0001-2999.dat.gz", "wt") as fh:
        fh.write("1::1::5::100\n1::3::1::101\n")
    with gzip.open(directory / "ratings.users3000-6040.no-timestamp.dat.gz", "wt") as fh:
        fh.write("3000::2::4\n3000::4::2\n")
    return directory


def write_kuairand(path: Path, *, rows: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "user_id\tvideo_id\tdate\tlabel\ttime_ms"
    body = (
        rows
        if rows is not None
        else ["1\t10\t20220408\t1\t1000", "1\t11\t20220408\t0\t2000", "2\t10\t20220409\t1\t3000"]
    )
    path.write_text("\n".join([header, *body]) + "\n")
    return path


def write_csv(path: Path, *, rows: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        rows
        if rows is not None
        else ["a,x,like,1,red", "a,y,dislike,2,blue", "b,x,skip,3,red", "b,z,like,4,"]
    )
    path.write_text("\n".join(["user,item,type,timestamp,category", *body]) + "\n")
    return path


def write_lines(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    """A ``user item item …`` file (LightGCN's train.txt format), plain or gzip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path
