"""A real Prometheus server scraping a real service and trainer on loopback: after some
feedback, PromQL through its HTTP API returns the responsiveness and lag series, and every
metric the dashboard and the rules use is declared on the processes' /metrics pages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.metric_names import RULES, dashboard_exprs, exposition_series, names_in, rule_exprs
from tests.processes import http_json
from veto.cli import promconfig
from veto.cli.redis_server import RedisServer, free_port

API_KEY = "integration-key"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="no `prometheus` on PATH"),
]


def _eventually(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    """Redis, ``veto serve``, ``veto train`` and Prometheus as child processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = RedisServer(data_dir=tmp / "redis").start()
        self.port, self.trainer_port, self.prom_port = free_port(), free_port(), free_port()
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}
        self.env.update(
            VETO_REDIS_URL=self.redis.url,
            VETO_ARTIFACTS_DIR=str(tmp / "artifacts"),
            VETO_API_KEY=API_KEY,
            VETO_RESPONSIVENESS_SAMPLE_RATE="1.0",  # measure every dislike
            VETO_INTERVAL_SECONDS="1",  # a training round every second
            VETO_DIM="16",
            VETO_BOOTSTRAP_EPOCHS="1",
            PYTHONUNBUFFERED="1",
        )

    def veto(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "veto.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self) -> None:
        boot = self.veto("bootstrap", "bootstrap", "--dataset", "synthetic", "--items", "300")
        assert boot.wait(timeout=120) == 0, self.log("bootstrap")
        self.veto("service", "serve", "--port", str(self.port))
        self.veto("trainer", "train", "--metrics-port", str(self.trainer_port))
        config = promconfig.scrape_config(
            service_targets=[f"127.0.0.1:{self.port}"],
            trainer_targets=[f"127.0.0.1:{self.trainer_port}"],
            scrape_interval_seconds=1.0,
            rule_files=[RULES],
        )
        config_file = promconfig.write_config(self.tmp / "prometheus.yml", config)
        binary = promconfig.find_prometheus()
        assert binary is not None
        argv = promconfig.prometheus_argv(
            binary,
            config_file=config_file,
            storage_dir=self.tmp / "prometheus",
            listen_port=self.prom_port,
        )
        log = (self.tmp / "prometheus.log").open("wb")
        self.children.append(("prometheus", subprocess.Popen(argv, stdout=log, stderr=log)))
        for name, url in [
            ("service", f"http://127.0.0.1:{self.port}/readyz"),
            ("trainer", f"http://127.0.0.1:{self.trainer_port}/metrics"),
            ("prometheus", f"http://127.0.0.1:{self.prom_port}/-/ready"),
        ]:
            self._alive()
            _eventually(lambda u=url: http_json("GET", u)[0] == 200, timeout=90, what=name)

    def _alive(self) -> None:
        for name, proc in self.children:
            if name != "bootstrap":
                assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        status, body = http_json("GET", url)
        assert status == 200 and body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module: starting it costs a bootstrap and three processes."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _positive(stack: Stack, promql: str) -> bool:
    return any(float(r["value"][1]) > 0 for r in stack.query(promql))


def test_prometheus_scrapes_responsiveness_and_lag_after_feedback(stack: Stack) -> None:
    api = f"http://127.0.0.1:{stack.port}"
    users = [f"user-{i}" for i in range(6)]
    likes, dislikes = [], []
    for n, user in enumerate(users):
        status, recs = http_json("GET", f"{api}/v1/users/{user}/recommendations?k=10")
        assert status == 200, recs
        item = recs["items"][n]["item_id"]
        likes.append({"event_id": f"e{n}-l", "user_id": user, "item_id": item, "type": "like"})
    headers = {"X-API-Key": API_KEY}
    status, body = http_json("POST", f"{api}/v1/feedback", body={"events": likes}, headers=headers)
    assert (status, body) == (200, {"accepted": len(likes), "duplicates": 0})
    # As in production, users dislike what they were shown: the top item after their like,
    # so the counterfactual has similar items to move away from.
    for n, user in enumerate(users):
        status, recs = http_json("GET", f"{api}/v1/users/{user}/recommendations?k=10")
        assert status == 200, recs
        item = recs["items"][0]["item_id"]
        dislikes.append(
            {"event_id": f"e{n}-d", "user_id": user, "item_id": item, "type": "dislike"}
        )
    status, body = http_json(
        "POST", f"{api}/v1/feedback", body={"events": dislikes}, headers=headers
    )
    assert (status, body) == (200, {"accepted": len(dislikes), "duplicates": 0})

    # Both processes are scraped.
    _eventually(lambda: len(stack.query("up == 1")) == 2, timeout=30, what="both targets up")
    # Online counterfactual responsiveness: one observation per sampled dislike.
    _eventually(
        lambda: _positive(stack, "sum(veto_responsiveness_similar_share_change_count)"),
        timeout=60,
        what="responsiveness observations in Prometheus",
    )
    # Learned responsiveness: the trainer publishes a version trained on the feedback and the
    # service swaps it in, observing the lag.
    _eventually(
        lambda: _positive(stack, "sum(veto_feedback_to_model_lag_seconds_count)"),
        timeout=120,
        what="a feedback-to-model lag observation in Prometheus\n" + stack.log("trainer"),
    )
    assert _positive(stack, 'sum(veto_feedback_events_total{type="dislike"})')
    assert stack.query("sum(veto_disliked_item_served_total)")[0]["value"][1] == "0"
    # Scraped on its own schedule: the trainer's gauge may reach Prometheus a scrape later.
    _eventually(
        lambda: _positive(stack, "max(veto_trainer_published_version)"),
        timeout=30,
        what="the trainer's published version in Prometheus",
    )


def test_every_metric_the_monitoring_uses_is_on_the_running_processes(stack: Stack) -> None:
    pages = [
        http_json("GET", f"http://127.0.0.1:{stack.port}/metrics"),
        http_json("GET", f"http://127.0.0.1:{stack.trainer_port}/metrics"),
    ]
    assert all(status == 200 for status, _ in pages)
    exported = set().union(*(exposition_series(str(text)) for _, text in pages))
    used = names_in(dashboard_exprs()) | names_in(rule_exprs())
    assert used - exported == set()
    # The rules load in the real server too.
    status, body = http_json("GET", f"http://127.0.0.1:{stack.prom_port}/api/v1/rules")
    assert status == 200 and len(body["data"]["groups"]) == 1
