"""``veto train --nproc N``: real ranks (subprocesses, gloo over loopback) against a real Redis.

A rank SIGKILLed in the middle of a round's training makes the launcher exit non-zero with
nothing published and every event still pending; the next start trains them and publishes a
version in the same format as a single process's. Bad rank counts are refused at start."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.faults.test_trainer_crash import PublishLog, assert_consistent, pending, send_events
from tests.processes import VetoProcess, bootstrapped_env, eventually
from trainer.learn.checkpoint import Checkpoint
from trainer.online import main
from trainer.online.launch import check_nproc, max_ranks, without_nproc
from veto import registry
from veto.artifacts import CHECKPOINT, list_versions, load_version, read_manifest, version_dir
from veto.errors import ConfigError

pytestmark = pytest.mark.timeout(120)
SETTINGS = {
    "stream_partitions": "4",
    "history_len": "8",
    "dim": "16",
    "threads": "2",
    "finetune_epochs": "1",
    "metrics_port": "0",
    "replay_ratio": "1",
    "keep_versions": "50",
}


@pytest.fixture
def ranks_env(
    redis_url: str, artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Version 1 of a 200-item synthetic catalog (bootstrapped in-process); the env of the
    ``veto train`` children."""
    return bootstrapped_env(
        monkeypatch, redis_url=redis_url, artifacts_dir=str(artifacts_dir), **SETTINGS
    )


def _train(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veto.cli", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _rank_pid(log: str, rank: int) -> int | None:
    found = re.search(rf"rank{rank} rank {rank} of \d+, pid (\d+)", log)
    return int(found.group(1)) if found else None


@pytest.mark.faults
def test_a_rank_killed_mid_round_publishes_nothing_and_the_restart_trains_every_event(
    ranks_env: dict[str, str],
    redis_client: redis.Redis,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    publishes = PublishLog(ranks_env["VETO_REDIS_URL"])
    events = send_events(redis_client, 300, seed=1)
    # Many epochs: the round trains for seconds, the kill lands inside it.
    slow = {**ranks_env, "VETO_FINETUNE_EPOCHS": "100", "VETO_INTERVAL_SECONDS": "0.2"}
    launcher = VetoProcess("train", ["--nproc", "2"], env=slow, log_path=tmp_path / "train.log")
    launcher.start()
    try:
        eventually(
            lambda: "rank1 rank 1 of 2: model replicated" in launcher.log(),
            timeout=60,
            what="rank 1 to start training",
        )
        pid = _rank_pid(launcher.log(), 1)
        assert pid is not None, launcher.log()
        time.sleep(0.3)  # into its steps: 100 epochs take seconds
        os.kill(pid, signal.SIGKILL)
        assert "rank1 trained in" not in launcher.log(), "the round ended before the kill"
        assert launcher.proc is not None
        code = launcher.proc.wait(timeout=60)
    finally:
        launcher.kill()
    log = launcher.log()
    assert code == 1, log
    assert "error: rank 1 killed by signal 9" in log
    assert "published version" not in log
    assert registry.current(redis_client) == 1 and list_versions(artifacts_dir) == [1]
    assert not [p for p in artifacts_dir.iterdir() if p.name.startswith(".")], "a temp dir left"
    assert pending(redis_client) == len(events)  # nothing acked: nothing lost

    recovered = _train(ranks_env, "--once", "--nproc", "2", "--max-events", "1000")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "published version 2 (300 events" in recovered.stdout
    assert assert_consistent(artifacts_dir, redis_client, published=publishes.close()) == 2
    # The same format as a single process's version: the same files and manifest fields,
    # valid (load_version checks every file's sha256), continued by a single process.
    send_events(redis_client, 5, seed=99)
    assert main.main(["--once"]) == 0  # one process (this one: torch is imported already)
    two, three = (load_version(version_dir(artifacts_dir, v)) for v in (2, 3))
    assert {p.name for p in two.path.iterdir()} == {p.name for p in three.path.iterdir()}
    manifests = [json.loads(read_manifest(v.path).to_json()) for v in (two, three)]
    assert set(manifests[0]) == set(manifests[1])
    assert manifests[0]["parent"] == 1 and manifests[1]["parent"] == 2
    assert set(manifests[0]["files"]) == set(manifests[1]["files"])
    assert two.vectors.shape == three.vectors.shape
    steps = [Checkpoint.load(v.path / CHECKPOINT).step for v in (two, three)]
    assert steps[1] > steps[0] > 0


@pytest.mark.parametrize("nproc", ["0", "-2", "100000"])
def test_a_bad_rank_count_is_refused_at_start(
    nproc: str, trainer_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["--once", "--nproc", nproc]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("veto train: error: --nproc"), err
    assert "ranks" not in out  # nothing was launched


def test_rank_count_rules() -> None:
    check_nproc(1, in_group=True)  # torchrun's rank with --nproc 1: fine
    check_nproc(max_ranks(), in_group=False)
    with pytest.raises(ConfigError, match="at least 1"):
        check_nproc(0, in_group=False)
    with pytest.raises(ConfigError, match="CPUs"):
        check_nproc(max_ranks() + 1, in_group=False)
    if max_ranks() > 1:
        with pytest.raises(ConfigError, match="torchrun"):
            check_nproc(2, in_group=True)
    assert without_nproc(["--once", "--nproc", "2", "--interval=3", "--nproc=4"]) == [
        "--once",
        "--interval=3",
    ]
