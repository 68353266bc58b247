"""Trainer test fixtures: the trainer's VETO_* environment pointed at the test Redis."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def trainer_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, artifacts_dir: Path) -> Path:
    """Small model settings for bootstrap / train runs; returns the artifacts root."""
    env = {
        "VETO_REDIS_URL": redis_url,
        "VETO_ARTIFACTS_DIR": str(artifacts_dir),
        "VETO_STREAM_PARTITIONS": "4",
        "VETO_HISTORY_LEN": "8",
        "VETO_DIM": "16",
        "VETO_THREADS": "1",
        "VETO_FINETUNE_EPOCHS": "3",
        "VETO_METRICS_PORT": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return artifacts_dir
