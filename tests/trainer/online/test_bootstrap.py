"""veto bootstrap: each format → version 1 published with histories; bad input writes nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.trainer.data.files import (
    write_csv,
    write_kuairand,
    write_ml1m,
    write_ml1m_partial,
    write_ml100k,
)
from trainer.data.load import load_dataset
from trainer.online.bootstrap import main
from veto import items, keys, registry
from veto.artifacts import (
    CHECKPOINT,
    ITEM_PRIOR,
    list_versions,
    load_version,
    read_manifest,
    version_dir,
)
from veto.events import EventType, HistoryEntry
from veto.keys import UserKeys


def _args(dataset: str, path: Path | None, *extra: str) -> list[str]:
    base = ["--dataset", dataset, "--epochs", "1", "--quiet"]
    return base + (["--path", str(path)] if path else []) + list(extra)


@pytest.mark.parametrize(
    ("dataset", "writer"),
    [
        ("ml-100k", lambda p: write_ml100k(p / "ml")),
        ("ml-1m", lambda p: write_ml1m(p / "ml")),
        ("ml-1m", lambda p: write_ml1m_partial(p / "ml")),
        ("kuairand", lambda p: write_kuairand(p / "k.tsv")),
        ("csv", lambda p: write_csv(p / "f.csv")),
    ],
)
def test_bootstrap_publishes_version_1_for_each_format(
    dataset: str, writer, trainer_env: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    assert main(_args(dataset, writer(tmp_path))) == 0
    assert list_versions(trainer_env) == [1]
    assert registry.current(redis_client) == 1
    version = load_version(version_dir(trainer_env, 1))
    assert version.manifest.parent is None and version.manifest.dim == 16
    assert version.manifest.watermark.stream_ids == {}
    assert (version.path / CHECKPOINT).is_file()
    assert version.popular  # most-liked first


def test_histories_and_sets_match_the_service_layout(
    trainer_env: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    assert main(_args("ml-100k", write_ml100k(tmp_path / "ml"))) == 0
    user = UserKeys("1", 4)
    raw = redis_client.lrange(user.history, 0, -1)
    history = [HistoryEntry.decode(r) for r in raw]
    assert [(h.item_id, h.type) for h in history] == [
        ("3", EventType.DISLIKE),
        ("2", EventType.LIKE),
        ("1", EventType.LIKE),
    ]  # newest first
    assert redis_client.smembers(user.liked) == {"1", "2"}
    assert redis_client.smembers(user.disliked) == {"3"}
    popular = load_version(version_dir(trainer_env, 1)).popular
    assert popular[0] in {"1", "2", "3"}


def test_synthetic_bootstrap_trims_histories(trainer_env: Path, redis_client: redis.Redis) -> None:
    assert main(_args("synthetic", None, "--items", "100")) == 0
    assert read_manifest(version_dir(trainer_env, 1)).n_items == 100
    assert redis_client.llen(UserKeys("u0", 4).history) == 8  # VETO_HISTORY_LEN


def test_if_empty_skips_when_a_version_is_published(
    trainer_env: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    directory = write_ml100k(tmp_path / "ml")
    assert main(_args("ml-100k", directory, "--if-empty")) == 0
    assert main(_args("ml-100k", directory, "--if-empty")) == 0
    assert list_versions(trainer_env) == [1]
    assert main(_args("ml-100k", directory)) == 0  # without the flag: a new version
    assert list_versions(trainer_env) == [1, 2]
    assert registry.current(redis_client) == 2


def test_bootstrap_seeds_the_catalog_with_every_item_and_its_category(
    trainer_env: Path, redis_client: redis.Redis
) -> None:
    assert main(_args("synthetic", None, "--items", "60")) == 0
    version = load_version(version_dir(trainer_env, 1))
    assert len(version.item_ids) == 60
    for row, item in enumerate(version.item_ids):
        record = redis_client.hgetall(keys.item(item))
        assert record.get("category") == version.categories[row] and record["hidden"] == "0"
    assert redis_client.hlen(keys.CATALOG_CATEGORIES) == 60
    assert redis_client.hlen(keys.CATALOG_WITHHELD) == 0
    assert int(redis_client.get(keys.CATALOG_GENERATION)) >= 1  # the services notice


def test_if_empty_seeds_a_catalog_never_written_from_the_served_version(
    trainer_env: Path, redis_client: redis.Redis
) -> None:
    assert main(_args("synthetic", None, "--items", "40")) == 0
    # A deployment bootstrapped before the catalog existed: no catalog keys at all.
    redis_client.delete(*redis_client.keys("veto:{catalog}:*"))
    assert main(_args("synthetic", None, "--items", "40", "--if-empty")) == 0
    assert redis_client.hlen(keys.CATALOG_CATEGORIES) == 40
    # Once written, the catalog is the source of truth: a later start leaves it alone.
    items.seed(redis_client, [("i0", "moved")])
    redis_client.hdel(keys.CATALOG_CATEGORIES, "i1")
    assert main(_args("synthetic", None, "--items", "40", "--if-empty")) == 0
    assert redis_client.hget(keys.CATALOG_CATEGORIES, "i0") == "moved"
    assert redis_client.hget(keys.CATALOG_CATEGORIES, "i1") is None
    assert list_versions(trainer_env) == [1]


@pytest.mark.parametrize(
    "rows",
    [["1\t1\t5\t100", "1\t99\t5\t101"], ["1\t1\t9\t100"], ["1\tx\t"], []],
)
def test_bad_input_is_an_error_and_writes_nothing(
    rows: list[str],
    trainer_env: Path,
    tmp_path: Path,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = write_ml100k(tmp_path / "ml", ratings=rows)
    assert main(_args("ml-100k", directory)) == 2
    assert "u.data" in capsys.readouterr().err
    assert list_versions(trainer_env) == []
    assert list(trainer_env.iterdir()) == []
    assert redis_client.get(keys.MODEL_POINTER) is None
    assert redis_client.dbsize() == 0


def test_bad_thresholds_and_settings_are_errors(
    trainer_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_ml100k(tmp_path / "ml")
    assert main(_args("ml-100k", directory, "--like-min", "2", "--dislike-max", "3")) == 2
    monkeypatch.setenv("VETO_DIM", "0")
    assert main(_args("ml-100k", directory)) == 2
    assert list_versions(trainer_env) == []


def test_redis_down_is_reported(
    trainer_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VETO_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(_args("ml-100k", write_ml100k(tmp_path / "ml"))) == 1
    assert list_versions(trainer_env) == []


def test_bootstrap_writes_the_item_prior_of_the_datasets_counts(
    trainer_env: Path, tmp_path: Path
) -> None:
    directory = write_ml100k(tmp_path / "ml")
    assert main(_args("ml-100k", directory)) == 0
    version = load_version(version_dir(trainer_env, 1))
    assert ITEM_PRIOR in version.manifest.files
    dataset = load_dataset("ml-100k", directory, like_min=4.0, dislike_max=2.0)
    likes = Counter(x.item_id for x in dataset.interactions if x.type == EventType.LIKE)
    dislikes = Counter(x.item_id for x in dataset.interactions if x.type == EventType.DISLIKE)
    assert likes and dislikes  # the fixture has both
    expected = [np.log((likes[i] + 1) / (dislikes[i] + 1)) for i in version.item_ids]
    np.testing.assert_allclose(version.item_prior, expected, rtol=1e-6)
