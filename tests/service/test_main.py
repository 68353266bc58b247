"""``veto serve`` as a real process: settings from VETO_* and flags, ready once it has loaded
the published version, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from service.main import main
from veto.cli.redis_server import free_port


def test_veto_serve_runs_the_service_until_sigterm(
    publish_version: Callable[..., Path], redis_url: str, artifacts_dir: Path
) -> None:
    publish_version(1)
    port = free_port()
    env = {**os.environ, "VETO_REDIS_URL": redis_url, "VETO_ARTIFACTS_DIR": str(artifacts_dir)}
    cmd = [sys.executable, "-m", "veto.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "veto serve did not become ready"
            time.sleep(0.1)
        recs = httpx.get(f"http://127.0.0.1:{port}/v1/users/x/recommendations?k=2")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    assert ready.json() == {"status": "ready", "model_version": 1}
    assert recs.status_code == 200 and len(recs.json()["items"]) == 2
    assert "veto_model_version 1.0" in metrics
    assert "process_cpu_seconds_total" in metrics  # the default registry's collectors
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)


def test_invalid_settings_are_refused_at_start(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("VETO_MAX_K", "0")
    assert main(["--port", "1"]) == 2
