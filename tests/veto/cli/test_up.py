"""``veto up``: the whole system as real child processes, started and stopped cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.processes import eventually, http_json
from veto import registry
from veto.cli import up
from veto.cli.redis_cluster import RedisCluster
from veto.cli.redis_server import free_port
from veto.cli.supervisor import Child, StopRequest, child_env, start_child, stop_all, wait_until
from veto.errors import ConfigError
from veto.settings import ServiceSettings


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}
    # A small, quick seed model: the test is about the processes, not the model.
    env.update(PYTHONUNBUFFERED="1", VETO_BOOTSTRAP_EPOCHS="1", VETO_DIM="16")
    return env


def _children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(c) for c in text)
    return found


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


def _wait_targets_up(
    prometheus: str, upp: UpProcess, *, service_targets: int = 1, timeout: float = 30
) -> None:
    """Until Prometheus has scraped every target up: ``service_targets`` replicas (one target
    each) and the trainer if ``veto up`` runs one."""
    deadline = time.monotonic() + timeout
    health: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        status, body = http_json("GET", f"{prometheus}/api/v1/targets")
        if status == 200:
            targets = body["data"]["activeTargets"]  # type: ignore[index]
            health = sorted((t["labels"]["job"], t["health"]) for t in targets)
            replicas = [h for h in health if h[0] == "veto-service"]
            trainer = [h for h in health if h[0] == "veto-trainer"]
            if replicas == [("veto-service", "up")] * service_targets and all(
                h == ("veto-trainer", "up") for h in trainer
            ):
                return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus targets {health}; output:\n{upp.output()[-3000:]}")


class UpProcess:
    """``veto up`` as a subprocess with its output in a file."""

    def __init__(self, args: list[str], log: Path, *, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veto.cli", "up", *args],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={**_env(), **(env or {})},
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed; output:\n{self.output()[-4000:]}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._fh.close()


@pytest.fixture
def run_up(tmp_path: Path) -> Iterator[type[UpProcess]]:
    started: list[UpProcess] = []

    class _Up(UpProcess):
        def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
            super().__init__(args, tmp_path / f"up-{len(started)}.log", env=env)
            started.append(self)

    yield _Up  # type: ignore[misc]
    for proc in started:
        proc.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_serves_takes_feedback_and_stops_every_child_on_sigterm(
    tmp_path: Path, run_up: type[UpProcess]
) -> None:
    port, trainer_port, prom_port = free_port(), free_port(), free_port()
    with_prometheus = shutil.which("prometheus") is not None
    extra = ["--with-prometheus", "--prometheus-port", str(prom_port), "--scrape-interval", "1"]
    upp = run_up(
        [
            "--port", str(port),
            "--trainer-metrics-port", str(trainer_port),
            "--data-dir", str(tmp_path / "var"),
            "--items", "300",
            *(extra if with_prometheus else []),
        ]
    )  # fmt: skip
    out = upp.wait_for("Ctrl-C stops everything.", timeout=180)
    key = next(line.split()[2] for line in out.splitlines() if "API key:" in line)
    children = _children_of(upp.process.pid)
    assert len(children) == (4 if with_prometheus else 3)  # redis, service, trainer, prometheus

    api = f"http://127.0.0.1:{port}"
    status, recs = http_json("GET", f"{api}/v1/users/alice/recommendations?k=5")
    assert status == 200, recs
    items = recs["items"]
    assert isinstance(items, list) and len(items) == 5
    disliked = items[0]["item_id"]
    event = {"events": [{"user_id": "alice", "item_id": disliked, "type": "dislike"}]}
    status, body = http_json("POST", f"{api}/v1/feedback", body=event)
    assert status in {401, 403}, body  # a key is always configured by `veto up`
    status, body = http_json("POST", f"{api}/v1/feedback", body=event, headers={"X-API-Key": key})
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    status, recs = http_json("GET", f"{api}/v1/users/alice/recommendations?k=5")
    assert status == 200
    assert disliked not in [i["item_id"] for i in recs["items"]]  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{trainer_port}/metrics", timeout=5) as r:
        assert b"veto_trainer_" in r.read()
    if with_prometheus:  # --with-prometheus scrapes both processes
        _wait_targets_up(f"http://127.0.0.1:{prom_port}", upp)

    upp.process.send_signal(signal.SIGTERM)
    assert upp.process.wait(timeout=60) == 0, upp.output()[-4000:]
    assert all(_gone(pid) for pid in children)
    assert "veto up: stopped" in upp.output()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_on_a_redis_cluster_bootstraps_serves_and_trains(
    tmp_path: Path, run_up: type[UpProcess], redis_cluster: RedisCluster
) -> None:
    redis_cluster.flush()
    port, trainer_port = free_port(), free_port()
    upp = run_up(
        [
            "--port", str(port),
            "--trainer-metrics-port", str(trainer_port),
            "--data-dir", str(tmp_path / "var"),
            "--items", "200",
            "--redis-url", redis_cluster.url,
        ],
        env={**_env(), "VETO_INTERVAL_SECONDS": "1"},
    )  # fmt: skip
    out = upp.wait_for("Ctrl-C stops everything.", timeout=180)
    key = next(line.split()[2] for line in out.splitlines() if "API key:" in line)
    assert len(_children_of(upp.process.pid)) == 2  # service, trainer: no embedded Redis
    api = f"http://127.0.0.1:{port}"
    status, recs = http_json("GET", f"{api}/v1/users/alice/recommendations?k=5")
    assert status == 200 and recs["degraded"] is False, recs
    disliked = recs["items"][0]["item_id"]  # type: ignore[index]
    event = {"events": [{"user_id": "alice", "item_id": disliked, "type": "dislike"}]}
    status, body = http_json("POST", f"{api}/v1/feedback", body=event, headers={"X-API-Key": key})
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    # The trainer reads the event from its partition stream on the cluster and publishes.
    eventually(lambda: _serving_version(api) == 2, timeout=60, what="version 2 from the trainer")
    status, recs = http_json("GET", f"{api}/v1/users/alice/recommendations?k=5")
    assert disliked not in [i["item_id"] for i in recs["items"]]  # type: ignore[attr-defined]
    upp.process.send_signal(signal.SIGTERM)
    assert upp.process.wait(timeout=60) == 0, upp.output()[-4000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_up_stops_everything_when_the_service_dies(tmp_path: Path, run_up: type[UpProcess]) -> None:
    port = free_port()
    upp = run_up(
        ["--port", str(port), "--no-trainer", "--data-dir", str(tmp_path / "var"), "--items", "100"]
    )
    upp.wait_for("Ctrl-C stops everything.", timeout=150)
    children = _children_of(upp.process.pid)
    service = next(p for p in children if b"cli\0serve" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(service, signal.SIGKILL)
    assert upp.process.wait(timeout=60) == 1
    assert "service exited unexpectedly with status -9" in upp.output()
    assert all(_gone(pid) for pid in children)  # Redis was stopped too


def _banner_value(out: str, label: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if f"{label}:" in line)


def _recommended(base: str, user: str) -> list[str]:
    status, recs = http_json("GET", f"{base}/v1/users/{user}/recommendations?k=5")
    assert status == 200, recs
    return [i["item_id"] for i in recs["items"]]


def _served_requests(base: str) -> float:
    """GET recommendations this replica answered, from its own /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("veto_service_request_duration_seconds_count")
        and "recommendations" in line
    )


def _serving_version(base: str) -> int | None:
    status, body = http_json("GET", f"{base}/readyz")
    return body.get("model_version") if status == 200 else None  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_up_with_replicas_shares_feedback_and_swaps_on_every_replica(
    tmp_path: Path, run_up: type[UpProcess]
) -> None:
    port, prom_port = free_port(), free_port()
    with_prometheus = shutil.which("prometheus") is not None
    extra = ["--with-prometheus", "--prometheus-port", str(prom_port), "--scrape-interval", "1"]
    data = tmp_path / "var"
    upp = run_up(
        [
            "--port", str(port),
            "--replicas", "2",
            "--no-trainer",
            "--data-dir", str(data),
            "--items", "100",
            *(extra if with_prometheus else []),
        ]
    )  # fmt: skip
    out = upp.wait_for("Ctrl-C stops everything.", timeout=150)
    key = _banner_value(out, "API key").split()[0]
    a, b = _banner_value(out, "Replicas").split()[:2]
    api = f"http://127.0.0.1:{port}"
    assert f"(veto proxy on {api})" in out and urllib.parse.urlsplit(a).port != port

    # Feedback posted through replica A is applied by replica B on the next request.
    disliked = _recommended(b, "alice")[0]
    event = {"events": [{"user_id": "alice", "item_id": disliked, "type": "dislike"}]}
    status, body = http_json("POST", f"{a}/v1/feedback", body=event, headers={"X-API-Key": key})
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    assert disliked not in _recommended(b, "alice")

    # The one address serves from both replicas (a new connection per request: round robin),
    # each replica counting only what it served.
    before = [_served_requests(a), _served_requests(b)]
    for _ in range(4):
        assert disliked not in _recommended(api, "alice")
    after = [_served_requests(a), _served_requests(b)]
    assert [y - x for x, y in zip(before, after, strict=True)] == [2.0, 2.0]

    # A hot swap reaches every replica: each watches the pointer in Redis on its own.
    from bench.stack import write_next_version  # the same catalog, perturbed vectors

    assert _serving_version(a) == _serving_version(b) == 1
    write_next_version(data / "artifacts", parent=1, flat_max_items=50_000, seed=1)
    client = redis.Redis.from_url(_banner_value(out, "Redis"))
    registry.publish(client, 2)
    client.close()
    eventually(
        lambda: _serving_version(a) == _serving_version(b) == 2,
        timeout=20,
        what="both replicas to serve version 2",
    )
    assert disliked not in _recommended(api, "alice")

    if with_prometheus:  # one scrape target per replica, each up
        _wait_targets_up(f"http://127.0.0.1:{prom_port}", upp, service_targets=2)

    # A replica that dies stops the whole stack, naming it.
    children = _children_of(upp.process.pid)
    b_argv = ["serve", "--port", str(urllib.parse.urlsplit(b).port)]
    replica_b = next(p for p in children if _argv(p)[-3:] == b_argv)
    os.kill(replica_b, signal.SIGKILL)
    assert upp.process.wait(timeout=60) == 1
    assert "service-2 exited unexpectedly with status -9" in upp.output()
    assert all(_gone(pid) for pid in children)  # the other replica, the proxy and Redis too


@pytest.mark.timeout(60)
def test_up_refuses_a_port_in_use_and_starts_nothing(
    tmp_path: Path, run_up: type[UpProcess]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        upp = run_up(["--port", str(port), "--data-dir", str(tmp_path / "var")])
        assert upp.process.wait(timeout=30) == 2  # a usage error: choose another port
    assert f"--port {port} is already in use" in upp.output()
    assert not (tmp_path / "var").exists()


@pytest.mark.timeout(60)
def test_up_refuses_an_unknown_veto_variable_and_starts_nothing(
    tmp_path: Path, run_up: type[UpProcess]
) -> None:
    typo = {"VETO_TRAINER_METRICS_PORT": "9100"}  # VETO_METRICS_PORT is the setting
    upp = run_up(["--data-dir", str(tmp_path / "var")], env=typo)
    assert upp.process.wait(timeout=30) == 2
    assert "VETO_TRAINER_METRICS_PORT" in upp.output()
    assert not (tmp_path / "var").exists()


@pytest.mark.timeout(120)
def test_up_names_the_child_that_died_and_exits_nonzero(
    tmp_path: Path, run_up: type[UpProcess]
) -> None:
    # Nothing listens on this Redis URL: the one-shot bootstrap cannot seed and exits.
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    upp = run_up(
        [
            "--port", str(free_port()),
            "--data-dir", str(tmp_path / "var"),
            "--redis-url", dead_redis,
            "--no-trainer",
            "--items", "50",
        ]
    )  # fmt: skip
    assert upp.process.wait(timeout=100) == 1
    assert "bootstrap exited unexpectedly" in upp.output()


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "0"],
        ["--port", "70000"],
        ["--items", "3"],
        ["--items", "many"],
        ["--replicas", "0"],
        ["--replicas", "-2"],
        ["--replicas", str(up.MAX_REPLICAS + 1)],
        ["--replicas", "two"],
    ],
)
def test_up_rejects_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        up._parser().parse_args(argv)
    assert exc.value.code == 2
    if argv[0] == "--replicas" and argv[1] != "two":
        err = capsys.readouterr().err
        assert f"--replicas must be between 1 and {up.MAX_REPLICAS}, got {argv[1]}" in err


def test_plan_gives_each_replica_its_own_port_and_one_replica_the_port_itself() -> None:
    port = free_port()
    one = up.make_plan(up._parser().parse_args(["--port", str(port)]), ServiceSettings())
    assert one.replica_ports == (port,) and not one.proxied
    args = up._parser().parse_args(["--port", str(port), "--replicas", "3"])
    three = up.make_plan(args, ServiceSettings())
    assert three.proxied and len(set(three.replica_ports)) == 3
    assert not {port, three.trainer_port} & set(three.replica_ports)
    banner = up._banner(three, "redis://127.0.0.1:1/0")
    replicas = " ".join(f"http://127.0.0.1:{p}" for p in three.replica_ports)
    assert f"Replicas:         {replicas}" in banner


def test_plan_generates_an_api_key_unless_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    args = up._parser().parse_args(["--port", str(free_port()), "--no-trainer"])
    monkeypatch.delenv("VETO_API_KEY", raising=False)
    first, second = up.make_plan(args, ServiceSettings()), up.make_plan(args, ServiceSettings())
    assert first.api_key_generated and len(first.api_key) >= 32
    assert first.api_key != second.api_key
    monkeypatch.setenv("VETO_API_KEY", "operator-key")
    plan = up.make_plan(args, ServiceSettings())
    assert (plan.api_key, plan.api_key_generated) == ("operator-key", False)


def test_the_banner_opens_with_the_console_and_says_the_docs_work_offline() -> None:
    plan = up.Plan(
        port=8123,
        trainer_port=None,
        prometheus_port=None,
        data_dir=Path("/tmp/var"),
        redis_url=None,
        items=10,
        api_key="k3y",
        api_key_generated=True,
        replica_ports=(8123,),
    )
    lines = up._banner(plan, "redis://:secret@127.0.0.1:6379/0").splitlines()
    first = lines[lines.index("Veto is up.") + 1]
    assert first.split() == [
        "Console:",
        "http://127.0.0.1:8123/console/",
        "(open",
        "it",
        "in",
        "a",
        "browser)",
    ]
    assert any("/docs" in line and "no internet needed" in line for line in lines)
    assert "secret" not in "\n".join(lines) and any("k3y" in line for line in lines)


def test_plan_places_the_trainer_next_to_the_service_and_rejects_clashes() -> None:
    port = free_port()
    plan = up.make_plan(up._parser().parse_args(["--port", str(port)]), ServiceSettings())
    assert plan.trainer_port not in {None, port} and plan.prometheus_port is None
    clash = ["--port", str(port), "--with-prometheus", "--prometheus-port", str(port)]
    with pytest.raises(ConfigError, match="ports must differ"):
        up.make_plan(up._parser().parse_args(clash), ServiceSettings())


def _python_child(name: str, code: str) -> Child:
    return start_child(name, [sys.executable, "-c", code], env=child_env({}))


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = _python_child("stubborn", code)
    time.sleep(0.5)  # let it install its handler
    assert child.stop(timeout=0.5) == -signal.SIGKILL
    assert not child.alive


def test_wait_until_names_the_child_that_died() -> None:
    sleeper = _python_child("sleeper", "import time; time.sleep(60)")
    quitter = _python_child("quitter", "raise SystemExit(3)")
    try:
        dead = wait_until(
            lambda: False, children=[sleeper, quitter], stop=StopRequest(), timeout=20
        )
        assert dead is quitter and quitter.process.returncode == 3
    finally:
        stop_all([sleeper, quitter], timeout=5)
    assert not sleeper.alive


def test_wait_until_gives_up_after_its_timeout() -> None:
    with pytest.raises(TimeoutError, match=r"the thing: not done after 0\.3s"):
        wait_until(lambda: False, children=[], stop=StopRequest(), timeout=0.3, what="the thing")


def test_with_prometheus_without_the_binary_says_so_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus here
    argv = ["--port", str(free_port()), "--with-prometheus", "--data-dir", str(tmp_path / "v")]
    args = up._parser().parse_args(argv)
    args.prometheus_port = free_port()
    plan = up.make_plan(args, ServiceSettings())
    children: list[Child] = []
    up._start_prometheus(plan, 1.0, children=children, env={})
    assert children == []
    assert "no `prometheus` binary on PATH" in capsys.readouterr().out
    assert not (plan.data_dir / "prometheus.yml").exists()
