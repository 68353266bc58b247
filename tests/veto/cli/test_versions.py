"""``veto versions``: list, publish (rollback) and prune against real Redis and real versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.version_factory import write_demo_version
from veto import registry
from veto.artifacts import ITEM_VECTORS, list_versions, version_dir
from veto.cli.redis_server import free_port
from veto.cli.versions import main


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, artifacts_dir: Path) -> Path:
    """Point the command at the test Redis and a fresh artifacts root."""
    monkeypatch.setenv("VETO_REDIS_URL", redis_url)
    monkeypatch.setenv("VETO_ARTIFACTS_DIR", str(artifacts_dir))
    return artifacts_dir


def _tamper(root: Path, version: int) -> None:
    path = version_dir(root, version) / ITEM_VECTORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_list_marks_the_current_version(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_version(env, 1)
    write_demo_version(env, 2, parent=1, ingest_time=1_700_000_000.0)
    registry.publish(redis_client, 1)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["version", "created_at"]
    assert lines[1].split()[:2] == ["*", "1"]
    assert lines[1].split()[3:5] == ["200", "flat"]
    assert lines[2].split()[0] == "2"
    assert lines[2].split()[-1] == "2023-11-14T22:13:20Z"  # the watermark's ingest time


def test_list_json_reports_each_version(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_version(env, 3, flat_max_items=50)
    registry.publish(redis_client, 3)
    assert main(["list", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["version"] == 3 and row["current"] is True
    assert row["index_type"] == "ivf" and row["n_items"] == 200


def test_list_with_no_versions_and_no_pointer(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list"]) == 0
    assert "(no versions)" in capsys.readouterr().out


def test_list_without_redis_still_lists_and_warns(
    monkeypatch: pytest.MonkeyPatch, artifacts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VETO_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("VETO_ARTIFACTS_DIR", str(artifacts_dir))
    write_demo_version(artifacts_dir, 1)
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert "current version unknown" in captured.err
    assert captured.out.splitlines()[1].split()[0] == "1"


def test_publish_rolls_back_to_an_older_version(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_version(env, 1)
    write_demo_version(env, 2, parent=1)
    registry.publish(redis_client, 2)
    pubsub = redis_client.pubsub()
    pubsub.subscribe("veto:model:notify")
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert main(["publish", "1"]) == 0
    assert registry.current(redis_client) == 1
    notice = pubsub.get_message(timeout=2)
    assert notice is not None and notice["data"] == "1"
    pubsub.close()
    assert "published version 1" in capsys.readouterr().out


def test_publish_unknown_version_is_refused(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_version(env, 1)
    registry.publish(redis_client, 1)
    assert main(["publish", "7"]) == 1
    assert "no version 7" in capsys.readouterr().err
    assert registry.current(redis_client) == 1


def test_publish_tampered_version_is_refused(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_version(env, 1)
    write_demo_version(env, 2, parent=1)
    registry.publish(redis_client, 1)
    _tamper(env, 2)
    assert main(["publish", "2"]) == 1
    assert "sha256" in capsys.readouterr().err
    assert registry.current(redis_client) == 1


@pytest.mark.parametrize("arg", ["0", "-1", "two"])
def test_publish_bad_version_argument_is_a_usage_error(
    env: Path, redis_client: redis.Redis, arg: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["publish", arg])
    assert exc.value.code == 2
    assert redis_client.get("veto:model:current") is None


def test_prune_keeps_the_newest_and_the_current(
    env: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    for v in range(1, 5):
        write_demo_version(env, v)
    registry.publish(redis_client, 1)  # rolled back to the oldest: it must survive
    assert main(["prune", "--keep", "2"]) == 0
    assert list_versions(env) == [1, 3, 4]
    assert "removed 1 version(s): 2" in capsys.readouterr().out


@pytest.mark.parametrize("keep", ["0", "-3"])
def test_prune_keep_below_one_is_refused(env: Path, keep: str) -> None:
    write_demo_version(env, 1)
    write_demo_version(env, 2)
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--keep", keep])
    assert exc.value.code == 2
    assert list_versions(env) == [1, 2]


def test_prune_without_redis_deletes_nothing(
    monkeypatch: pytest.MonkeyPatch, artifacts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VETO_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("VETO_ARTIFACTS_DIR", str(artifacts_dir))
    for v in (1, 2, 3):
        write_demo_version(artifacts_dir, v)
    # Without the pointer, pruning could delete the version being served.
    assert main(["prune", "--keep", "1"]) == 1
    assert "cannot read the model pointer" in capsys.readouterr().err
    assert list_versions(artifacts_dir) == [1, 2, 3]
