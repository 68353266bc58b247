"""``veto proxy``: the one address of ``veto up --replicas N``, as a real child process in
front of real HTTP servers (threads of this test answering who they are)."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import VetoProcess, eventually, veto_env
from veto.cli.proxy import UNAVAILABLE_BODY, Balancer, Upstream, parse_upstream
from veto.cli.proxy import main as proxy_cli
from veto.cli.redis_server import free_port

BIG = bytes(range(256)) * 40_000  # 10 MB: more than any socket buffer, so flow control runs


class _Replica(http.server.ThreadingHTTPServer):
    """An HTTP server on a free loopback port that answers GET /who with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Replica

    def do_GET(self) -> None:
        body = BIG if self.path == "/big" else self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))  # echoed back
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replicas() -> Iterator[list[_Replica]]:
    servers = [_Replica("a"), _Replica("b")]
    yield servers
    for server in servers:
        server.stop()


def _start_proxy(ports: list[int], tmp_path: Path) -> tuple[VetoProcess, int]:
    port = free_port()
    upstreams = [arg for p in ports for arg in ("--upstream", f"127.0.0.1:{p}")]
    proxy = VetoProcess(
        "proxy",
        ["--port", str(port), "--down-seconds", "30", *upstreams],
        env=veto_env(),
        log_path=tmp_path / "proxy.log",
    ).start()

    def listening() -> bool:
        assert proxy.running, proxy.log()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    eventually(listening, timeout=15, what="veto proxy to listen")
    return proxy, port


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[[list[int]], int]]:
    started: list[VetoProcess] = []

    def start(ports: list[int]) -> int:
        proxy, port = _start_proxy(ports, tmp_path)
        started.append(proxy)
        return port

    yield start
    for proxy in started:
        assert proxy.stop(timeout=10) == 0, proxy.log()  # SIGTERM: a clean exit


def _get(port: int, path: str) -> tuple[int, bytes]:
    """One request on a new connection (the proxy balances connections)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_proxy_alternates_new_connections_over_the_replicas(
    replicas: list[_Replica], start_proxy: Callable[[list[int]], int]
) -> None:
    port = start_proxy([r.port for r in replicas])
    answers = [_get(port, "/who") for _ in range(4)]  # the readiness probe took one turn
    assert answers in (
        [(200, b"a"), (200, b"b")] * 2,
        [(200, b"b"), (200, b"a")] * 2,
    )


def test_proxy_keeps_a_keepalive_connection_on_its_replica_and_copies_large_bodies(
    replicas: list[_Replica], start_proxy: Callable[[list[int]], int]
) -> None:
    port = start_proxy([r.port for r in replicas])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        names = []
        for _ in range(3):
            conn.request("GET", "/who")
            names.append(conn.getresponse().read())
        assert len(set(names)) == 1
        conn.request("GET", "/big")
        assert conn.getresponse().read() == BIG
        conn.request("POST", "/echo", body=BIG)
        assert conn.getresponse().read() == BIG
    finally:
        conn.close()


def test_proxy_skips_a_replica_that_refuses_connections(
    replicas: list[_Replica], start_proxy: Callable[[list[int]], int]
) -> None:
    dead = free_port()  # nothing listens there
    port = start_proxy([dead, replicas[0].port])
    assert [_get(port, "/who") for _ in range(4)] == [(200, b"a")] * 4


def test_proxy_answers_503_in_the_error_shape_when_no_replica_accepts(
    replicas: list[_Replica], start_proxy: Callable[[list[int]], int]
) -> None:
    port = start_proxy([replicas[0].port])
    assert _get(port, "/who") == (200, b"a")
    replicas[0].stop()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/feedback", body=b'{"events": []}')
    resp = conn.getresponse()
    assert resp.status == 503
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Retry-After") == "1"
    assert json.loads(resp.read()) == UNAVAILABLE_BODY
    conn.close()


def test_balancer_rotates_over_the_replicas_that_are_up_and_tries_the_others_last() -> None:
    now = [0.0]
    a, b, c = Upstream("h", 1), Upstream("h", 2), Upstream("h", 3)
    balancer = Balancer([a, b, c], down_seconds=5.0, clock=lambda: now[0])
    assert [balancer.candidates()[0] for _ in range(4)] == [a, b, c, a]
    assert balancer.mark_down(b) and not balancer.mark_down(b)  # reported once
    firsts = [balancer.candidates()[0] for _ in range(4)]
    assert b not in firsts and firsts.count(a) == firsts.count(c) == 2
    assert balancer.candidates()[-1] == b
    now[0] = 6.0  # the down time is over: back in turn
    assert b in [balancer.candidates()[0] for _ in range(3)]
    for upstream in (a, b, c):
        balancer.mark_down(upstream)
    assert sorted(balancer.candidates(), key=lambda u: u.port) == [a, b, c]  # all still tried


@pytest.mark.parametrize(
    ("text", "upstream"),
    [("10.0.0.2:8001", Upstream("10.0.0.2", 8001)), ("8001", Upstream("127.0.0.1", 8001))],
)
def test_parse_upstream(text: str, upstream: Upstream) -> None:
    assert parse_upstream(text) == upstream


@pytest.mark.parametrize("text", ["host:", "host:0", "host:70000", "host:http"])
def test_parse_upstream_rejects_a_bad_address(text: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "0", "--upstream", "1"],
        ["--port", "8000"],
        ["--port", "8000", "--upstream", "h:"],
    ],
)
def test_proxy_rejects_bad_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        proxy_cli(argv)
    assert exc.value.code == 2
