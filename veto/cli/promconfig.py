"""A Prometheus configuration for processes on loopback: what ``veto up --with-prometheus``
runs Prometheus with. Same jobs and rules as ``docker/prometheus/prometheus.yml``, with static
targets instead of Docker DNS discovery. Written as JSON, which is valid YAML."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The repository's rule file, present in a source checkout (``make run``).
# Package data: the same rules the compose stack mounts, found in an installed package too.
RULES_FILE = Path(__file__).resolve().parent / "rules.yml"
SERVICE_JOB = "veto-service"
TRAINER_JOB = "veto-trainer"


def scrape_config(
    *,
    service_targets: Sequence[str],
    trainer_targets: Sequence[str],
    scrape_interval_seconds: float = 5.0,
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """The configuration as a dict: one job for the service replicas, one for the trainer."""
    interval = f"{int(scrape_interval_seconds * 1000)}ms"
    jobs = [(SERVICE_JOB, service_targets), (TRAINER_JOB, trainer_targets)]
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": list(t)}]}
            for job, t in jobs
            if t
        ],
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` to ``path`` (parents created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def prometheus_argv(
    binary: str, *, config_file: Path, storage_dir: Path, listen_port: int
) -> list[str]:
    """The command line of a Prometheus server on loopback."""
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={storage_dir}",
        f"--web.listen-address=127.0.0.1:{listen_port}",
    ]


def find_prometheus() -> str | None:
    """The ``prometheus`` binary on PATH, if any."""
    return shutil.which("prometheus")
