"""The compose stack, the Prometheus config and rules, and the Grafana dashboard, checked by the
real tools (docker-compose, promtool) and against the metrics the processes export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metric_names import (
    CONTRACT,
    DASHBOARD,
    ROOT,
    RULES,
    contract_series,
    dashboard_exprs,
    names_in,
    process_series,
    rule_exprs,
)
from tests.processes import eventually, http_json
from veto.cli import promconfig
from veto.cli.proxy import UNAVAILABLE_BODY
from veto.cli.redis_server import free_port
from veto.settings import known_variables

COMPOSE = ROOT / "docker-compose.yml"
PROM_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "docker" / "grafana"
PROXY = ROOT / "docker" / "proxy"
HAPROXY_CFG = PROXY / "haproxy.cfg"
SECRETS = {"REDIS_PASSWORD": "r-secret", "VETO_API_KEY": "k-secret", "GRAFANA_ADMIN_PASSWORD": "g"}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not on PATH (apt-get install docker-compose; .ci/run does)",
)
needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not on PATH (apt-get install haproxy; .ci/run does)",
)
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not on PATH (apt-get install prometheus; .ci/run does)",
)


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def _mount(volume: str | dict[str, Any]) -> tuple[str, tuple[str, bool]]:
    """(target, (source, read only)) of a short (``src:dst[:ro]``) or long volume entry."""
    if isinstance(volume, str):
        source, target, *mode = volume.split(":")
        return target, (source, mode == ["ro"])
    return volume["target"], (volume["source"], bool(volume.get("read_only")))


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not on PATH")
    result = _compose("config", env=SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@needs_compose
def test_compose_file_parses_with_its_secrets_set(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert set(services) == {
        "redis",
        "bootstrap",
        "service",
        "proxy",
        "trainer",
        "prometheus",
        "grafana",
    }


@needs_compose
def test_redis_has_aof_a_password_and_no_host_port(compose_config: dict[str, Any]) -> None:
    redis = compose_config["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert command[command.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
    assert "ports" not in redis
    url = compose_config["services"]["service"]["environment"]["VETO_REDIS_URL"]
    assert url == f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"


@needs_compose
def test_service_scales_behind_the_proxy_after_bootstrap(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    service = services["service"]
    assert "ports" not in service  # replicas cannot share a fixed host port
    assert service["environment"]["VETO_API_KEY"] == SECRETS["VETO_API_KEY"]
    assert service["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    assert [p["published"] for p in services["proxy"]["ports"]] in ([8000], ["8000"])
    bootstrap = services["bootstrap"]
    assert (
        bootstrap["command"][:2] == ["veto", "bootstrap"] and "--if-empty" in bootstrap["command"]
    )
    assert bootstrap["image"] == services["trainer"]["image"]
    for name in ("service", "trainer", "bootstrap"):
        mounts = dict(_mount(v) for v in services[name]["volumes"])
        # One shared volume; only the trainer side writes versions, the service reads them.
        assert mounts["/artifacts"] == ("artifacts", name == "service")


@needs_compose
def test_service_runs_two_replicas_by_default_behind_haproxy(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    assert services["service"]["deploy"]["replicas"] == 2
    proxy = services["proxy"]
    assert proxy["image"].startswith("haproxy:")
    command = proxy["command"]
    # The config's relative paths (errors/503.http) resolve in its mounted directory.
    assert command[command.index("-C") + 1] == "/usr/local/etc/haproxy"
    assert command[command.index("-f") + 1] == "/usr/local/etc/haproxy/haproxy.cfg"
    mounts = dict(_mount(v) for v in proxy["volumes"])
    assert mounts["/usr/local/etc/haproxy"] == (str(PROXY), True)


@needs_compose
def test_service_replicas_follow_service_replicas_variable() -> None:
    result = _compose("config", env={**SECRETS, "SERVICE_REPLICAS": "3"})
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["services"]["service"]["deploy"]["replicas"] == 3


@needs_compose
@pytest.mark.parametrize("unset", sorted(SECRETS))
def test_compose_refuses_to_run_without_a_secret(unset: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != unset}
    result = _compose("config", "-q", env=env)
    assert result.returncode != 0
    assert f"set {unset}" in result.stderr


def test_dockerfiles_keep_torch_out_of_the_service_and_run_as_non_root() -> None:
    service = (ROOT / "docker" / "service.Dockerfile").read_text()
    trainer = (ROOT / "docker" / "trainer.Dockerfile").read_text()
    installs = [line for line in service.splitlines() if "pip install" in line]
    assert installs == ['RUN pip install ".[service]" \\']
    assert "find_spec('torch') is None" in service  # the build fails if torch sneaks in
    assert '".[service]"' in service and "COPY trainer" not in service
    assert "download.pytorch.org/whl/cpu" in trainer and '"torch==2.13.0"' in trainer
    for text in (service, trainer):
        assert text.startswith("#") and "FROM python:3.11-slim" in text
        assert "\nUSER veto\n" in text and "HEALTHCHECK" in text


def _haproxy(*args: str) -> subprocess.CompletedProcess[str]:
    # -C: the config's relative paths are relative to its directory, as in the compose file.
    return subprocess.run(
        ["haproxy", *args], capture_output=True, text=True, timeout=30, cwd=str(PROXY)
    )


@needs_haproxy
def test_haproxy_accepts_the_compose_proxy_config_without_a_warning() -> None:
    result = _haproxy("-c", "-dW", "-C", str(PROXY), "-f", str(HAPROXY_CFG))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
def test_haproxy_rejects_a_broken_proxy_config(tmp_path: Path) -> None:
    bad = tmp_path / "haproxy.cfg"
    bad.write_text(HAPROXY_CFG.read_text().replace("balance roundrobin", "balance roundrobbin"))
    assert _haproxy("-c", "-C", str(PROXY), "-f", str(bad)).returncode != 0


def test_proxy_503_is_the_error_shape_veto_proxy_answers() -> None:
    raw = (PROXY / "errors" / "503.http").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == UNAVAILABLE_BODY


class _Healthy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_haproxy(tmp_path: Path) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """The compose proxy config run by the real haproxy with only its Docker parts swapped:
    loopback bind, one replica (a thread here) and one dead one instead of Docker's DNS."""
    replica = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    port = free_port()
    text = HAPROXY_CFG.read_text()
    swaps = {
        "bind :8000": f"bind 127.0.0.1:{port}",
        " resolvers docker resolve-prefer ipv4 init-addr none": "",
        "server-template service 10 service:8000": (
            f"server live 127.0.0.1:{replica.server_address[1]}\n"
            f"    server dead 127.0.0.1:{free_port()}"
        ),
        "log stdout format raw": "log stderr format raw",
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    log = (tmp_path / "haproxy.log").open("wb")
    proc = subprocess.Popen(
        ["haproxy", "-db", "-C", str(PROXY), "-f", str(config)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: http_json("GET", f"{url}/healthz")[0] == 200, timeout=15, what="haproxy")
        yield url, replica
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        replica.shutdown()
        replica.server_close()


@needs_haproxy
@pytest.mark.timeout(60)
def test_haproxy_config_balances_hides_metrics_and_answers_the_error_shape(
    local_haproxy: tuple[str, ThreadingHTTPServer],
) -> None:
    url, replica = local_haproxy
    # The dead replica refuses: every GET lands on the live one (retried or checked out).
    for _ in range(6):
        assert http_json("GET", f"{url}/v1/users/u1/recommendations")[0] == 200
    status, body = http_json("GET", f"{url}/metrics")
    assert status == 404 and body["error"]["code"] == "not_found"
    replica.shutdown()
    replica.server_close()
    time.sleep(0.2)
    status, body = http_json("POST", f"{url}/v1/feedback", body={"events": []})
    assert (status, body) == (503, UNAVAILABLE_BODY)


@needs_promtool
def test_promtool_accepts_the_compose_prometheus_config() -> None:
    result = _promtool("check", "config", str(PROM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_loopback_config_of_veto_up(tmp_path: Path) -> None:
    config = promconfig.scrape_config(
        service_targets=["127.0.0.1:8000", "127.0.0.1:8002"],  # one target per replica
        trainer_targets=["127.0.0.1:8001"],
        scrape_interval_seconds=1.0,
        rule_files=[RULES],
    )
    path = promconfig.write_config(tmp_path / "prometheus.yml", config)
    result = _promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [job["job_name"] for job in yaml.safe_load(PROM_CONFIG.read_text())["scrape_configs"]]
    assert jobs == [job["job_name"] for job in config["scrape_configs"]]


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yml"
    bad.write_text(RULES.read_text().replace("> 0", "> > 0", 1))
    assert _promtool("check", "rules", str(bad)).returncode != 0


_ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'veto_disliked_item_served_total{{instance="a"}}'
        values: '0 0 0 1 1 1 1 1 1 1'
      - series: 'veto_trainer_last_round_timestamp_seconds'
        values: '0 60 120 180 180 180 180 180 180 180 180 180 180 180 180 180 180 180 180 180'
      - series: 'veto_trainer_published_version'
        values: '1 2 3 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4'
      - series: 'veto_trainer_pending_events'
        values: '0 0 0 0 10 20 30 40 50 60 70 80 90 100 110 120 130 140 150 160'
      - series: 'up{{job="veto-trainer"}}'
        values: '1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 2m
        alertname: VetoDislikedItemServed
        exp_alerts: []
      - eval_time: 4m
        alertname: VetoDislikedItemServed
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations:
              summary: "A disliked item was served to the user who disliked it"
              description: >-
                veto_disliked_item_served_total rose by 1 in 5 minutes.
                The filter on the user's disliked set failed: this must stay 0.
      - eval_time: 5m
        alertname: VetoTrainerStalled
        exp_alerts: []
      - eval_time: 19m
        alertname: VetoTrainerStalled
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations:
              summary: "The trainer is stalled"
              description: >-
                No training round for 10 minutes, or no new version published in 15 minutes
                while pending feedback grows.
      - eval_time: 19m
        alertname: VetoTrainerDown
        exp_alerts: []
"""


@needs_promtool
def test_alerts_fire_on_a_served_dislike_and_a_stalled_trainer(tmp_path: Path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(_ALERT_TESTS.format(rules=json.dumps(str(RULES))))
    result = _promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_the_provisioned_veto_responsiveness_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] == "Veto responsiveness"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in dash["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    for required in (
        "Online counterfactual responsiveness",
        "Feedback-to-model lag",
        "Disliked items served",
        "Request rate by route",
        "Request latency p50 / p99 by route",
        "Degraded responses",
        "Model version & age",
        "Model swap failures",
        "Trainer round duration",
        "Trainer examples / s",
        "Trainer loss components",
        "Pending feedback events",
        "Published model version",
    ):
        assert required in titles
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/veto.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_dashboard_and_rules_use_only_contract_metrics() -> None:
    used = names_in(dashboard_exprs()) | names_in(rule_exprs())
    assert used - contract_series() == set()
    # Everything a responsiveness dashboard must show is on it.
    on_dashboard = names_in(dashboard_exprs())
    for name in CONTRACT:
        if name != "veto_trainer_last_round_timestamp_seconds":
            assert any(s.startswith(name.removesuffix("_total")) for s in on_dashboard), name


@pytest.mark.parametrize("module", ["service.metrics", "trainer.online.metrics"])
def test_every_metric_the_monitoring_uses_is_exported(module: str) -> None:
    exported, missing = process_series([module])
    if missing:
        pytest.skip(f"{module} is not written yet")
    prefix = "veto_trainer_" if module.startswith("trainer") else "veto_"
    used = names_in(dashboard_exprs()) | names_in(rule_exprs())
    mine = {n for n in used if n.startswith(prefix)}
    if prefix == "veto_":
        mine = {n for n in mine if not n.startswith("veto_trainer_")}
    assert mine, module
    assert mine - exported == set()


def test_every_veto_variable_the_deployment_sets_is_one_a_process_reads() -> None:
    # An unknown VETO_* variable stops a process at start (veto.settings): a typo in a
    # Dockerfile or the compose file would make a container exit.
    compose = yaml.safe_load(COMPOSE.read_text())
    names = {k for k in compose.get("x-veto-env", {}) if k.startswith("VETO_")}
    for service in compose["services"].values():
        env = service.get("environment", {})
        names |= {k for k in (env if isinstance(env, dict) else {}) if k.startswith("VETO_")}
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        names |= set(re.findall(r"\b(VETO_[A-Z0-9_]+)=", dockerfile.read_text()))
    assert "VETO_METRICS_PORT" in names and "VETO_REDIS_URL" in names
    assert sorted(names - known_variables()) == []
