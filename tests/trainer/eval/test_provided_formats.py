"""`veto eval --train --test` on provided splits in the published formats: a CSV without a
timestamp column and `user item item …` lines (`--split-format lines`), loaded as they are."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from trainer.data.synthetic import make_world
from trainer.eval.data import load_eval_data
from trainer.eval.main import main
from trainer.eval.options import parse_options
from veto.errors import ConfigError
from veto.events import EventType

# A tiny model and a short simulation, as in test_main: the tests are about the formats.
QUICK = [
    *("--epochs", "1", "--set", "dim=16", "--set", "batch_size=256"),
    *("--set", "n_sampled=128", "--set", "history_len=20"),
    *("--no-progress", "--sim-users", "16", "--sim-steps", "10"),
]


@pytest.fixture(scope="module")
def likes() -> dict[str, list[str]]:
    """Each synthetic user's liked items, oldest first (the only events the line format has)."""
    world = make_world(n_items=200, n_users=40, n_categories=5, dim=8, events_per_user=20, seed=4)
    out: dict[str, list[str]] = {}
    for x in world.interactions:
        if x.type == EventType.LIKE:
            out.setdefault(x.user_id, []).append(x.item_id)
    return out


def _split(likes: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Every user's last like held out, as LightGCN-style splits hold out per user."""
    kept = {u: items for u, items in likes.items() if len(items) >= 2}
    return {u: items[:-1] for u, items in kept.items()}, {
        u: items[-1:] for u, items in kept.items()
    }


def _write_lines(path: Path, users: dict[str, list[str]]) -> Path:
    text = "".join(f"{u} {' '.join(items)}\n" for u, items in users.items())
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _write_untimed_csv(path: Path, users: dict[str, list[str]]) -> Path:
    rows = [f"{u},{item},like" for u, items in users.items() for item in items]
    path.write_text("\n".join(["user,item,type", *rows]) + "\n")
    return path


def _argv(train: Path, test: Path, out: Path, *extra: str) -> list[str]:
    return ["--train", str(train), "--test", str(test), *extra, "--out", str(out)]


def test_line_files_run_end_to_end_and_write_a_report(
    likes: dict[str, list[str]], tmp_path: Path
) -> None:
    train_users, test_users = _split(likes)
    train = _write_lines(tmp_path / "train.txt", train_users)
    test = _write_lines(tmp_path / "test.txt.gz", test_users)
    out = tmp_path / "report"
    argv = _argv(train, test, out, "--split-format", "lines", "--objectives", "ssm+ntr")
    assert main([*argv, *QUICK]) == 0
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert config["split"] == "provided"
    assert config["dataset"] == "provided lines (train.txt, test.txt.gz)"
    assert config["eval_users"] == [len(test_users)]  # per seed
    assert config["interactions"] == sum(len(items) for items in train_users.values())
    assert 0.0 <= results["ssm+ntr"]["recall@20"]["mean"] <= 1.0
    assert (out / "report.md").is_file()


def test_line_files_load_as_written(likes: dict[str, list[str]], tmp_path: Path) -> None:
    train_users, test_users = _split(likes)
    train = _write_lines(tmp_path / "train.txt", train_users)
    test = _write_lines(tmp_path / "test.txt", test_users)
    data = load_eval_data(
        parse_options(_argv(train, test, tmp_path / "o", "--split-format", "lines"))
    )
    assert data.provided is not None and not data.has_timestamps
    train_events, test_events = data.provided
    first = next(iter(train_users))
    assert [x.item_id for x in train_events if x.user_id == first] == train_users[first]
    assert {x.type for x in [*train_events, *test_events]} == {EventType.LIKE}
    assert len(test_events) == len(test_users)
    # The catalog: train items first, then items only the test file names.
    train_items = list(dict.fromkeys(i for items in train_users.values() for i in items))
    assert data.item_ids[: len(train_items)] == train_items
    assert set(data.item_ids) == set(train_items) | {i for v in test_users.values() for i in v}


def test_csv_files_without_a_timestamp_column_load_in_file_order(
    likes: dict[str, list[str]], tmp_path: Path
) -> None:
    train_users, test_users = _split(likes)
    train = _write_untimed_csv(tmp_path / "train.csv", train_users)
    test = _write_untimed_csv(tmp_path / "test.csv", test_users)
    data = load_eval_data(parse_options(_argv(train, test, tmp_path / "o")))
    assert data.provided is not None and not data.has_timestamps
    first = next(iter(train_users))
    assert [x.item_id for x in data.provided[0] if x.user_id == first] == train_users[first]
    assert data.name == "provided csv (train.csv, test.csv)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--train", "a.txt", "--test", "b.txt", "--split-format", "tsv"],
            "unknown --split-format",
        ),
        (["--split-format", "lines"], "applies only to a provided"),
        (["--dataset", "csv", "--path", "a.csv", "--split-format", "csv"], "applies only"),
    ],
)
def test_bad_split_formats_are_config_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options([*argv, "--out", str(tmp_path / "o")])


def test_split_format_defaults_to_csv(tmp_path: Path) -> None:
    opts = parse_options(["--train", "a.csv", "--test", "b.csv", "--out", str(tmp_path / "o")])
    assert opts.split_format == "csv"


def test_bad_provided_files_fail_with_file_and_line_and_write_nothing(
    likes: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_users, test_users = _split(likes)
    train = _write_lines(tmp_path / "train.txt", train_users)
    test = _write_lines(tmp_path / "test.txt", test_users)
    test.write_text(test.read_text() + "u9 1 x|y\n")
    out = tmp_path / "out"
    lines = ["--split-format", "lines"]
    assert main([*_argv(train, test, out, *lines), *QUICK]) == 2
    assert f"{test}:{len(test_users) + 1}: invalid item id 'x|y'" in capsys.readouterr().err
    # Line files read with the default csv format: the missing header is named.
    assert main([*_argv(train, test, out), *QUICK]) == 2
    assert f"{train}:1: header lacks column(s) user, item" in capsys.readouterr().err
    test.write_text("1\n2\n")
    assert main([*_argv(train, test, out, *lines), *QUICK]) == 2
    assert "no interactions" in capsys.readouterr().err
    assert not out.exists()
