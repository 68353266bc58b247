"""``veto proxy``: the one address in front of ``veto up --replicas N``.

    client ──TCP──▶ veto proxy :PORT ──▶ veto serve :A   (replica 1, its own model snapshot)
                                     ├──▶ veto serve :B   (replica 2)
                                     └──▶ ...

A layer-4 round-robin balancer on asyncio (uvloop when installed): each client connection
is handed whole to the next replica that accepts a connection, and bytes are copied both
ways with flow control; nothing is parsed, so a request costs the proxy two reads and two
writes. Balancing is per connection: a keep-alive client stays on one replica, as it would
with SO_REUSEPORT. A replica that refuses a connection (or does not accept it within
``connect_timeout``) is tried last for ``down_seconds``; when every replica refuses, the
client gets a 503 in the service's one JSON error shape (``UNAVAILABLE_BODY``, the same
body the compose stack's HAProxy answers from ``docker/proxy/errors/503.http``).

Why not SO_REUSEPORT: it balances only on Linux (macOS gives the last socket everything),
each replica would need a second socket for its own address, and a client reaching no replica
gets a refused connection instead of an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

UNAVAILABLE_BODY = {
    "error": {
        "code": "no_replica",
        "message": "no service replica accepts connections",
        "details": None,
    }
}


def unavailable_response() -> bytes:
    """The raw HTTP/1.1 503 the proxy answers when no replica accepts a connection."""
    body = json.dumps(UNAVAILABLE_BODY, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class Upstream:
    """One replica's address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``HOST:PORT`` (or ``PORT`` for 127.0.0.1) as an Upstream; ValueError otherwise."""
    host, sep, port_text = text.rpartition(":")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    return Upstream(host if sep and host else "127.0.0.1", port)


class Balancer:
    """Round-robin over the upstreams; one that refused a connection goes last for a while."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        down_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self.upstreams = tuple(upstreams)
        self._down_seconds = down_seconds
        self._clock = clock
        self._next = 0
        self._down_until: dict[Upstream, float] = {}

    def candidates(self) -> list[Upstream]:
        """Every upstream once: those up in turn from the next one, then those marked down
        (still tried: all may be down, or one may be back)."""
        up = [u for u in self.upstreams if self.is_up(u)]
        down = [u for u in self.upstreams if u not in up]
        if not up:
            return down
        start = self._next % len(up)
        self._next += 1
        return up[start:] + up[:start] + down

    def mark_down(self, upstream: Upstream) -> bool:
        """Record a refused connection; True if the upstream was up until now."""
        was_up = self.is_up(upstream)
        self._down_until[upstream] = self._clock() + self._down_seconds
        return was_up

    def mark_up(self, upstream: Upstream) -> bool:
        """Record an accepted connection; True if the upstream was marked down."""
        return self._down_until.pop(upstream, None) is not None

    def is_up(self, upstream: Upstream) -> bool:
        return self._down_until.get(upstream, 0.0) <= self._clock()


class _Pipe(asyncio.Protocol):
    """One side of a proxied connection: what it receives is written to its peer.

    Flow control: when this side's send buffer is full, the peer stops reading until it
    drains. EOF is passed on (half-close); when either side closes, so does the other."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return True  # not linked yet: the client side passes it on when it is
        if peer.eof or not peer.transport.can_write_eof():
            peer.transport.close()
            return False
        peer.transport.write_eof()
        return True  # keep sending the other way

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Pipe):
    """The client's connection: buffered until a replica accepts, then linked to it."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self._proxy = proxy
        self._pending = bytearray()
        self._rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._proxy.clients.add(self)
        self._proxy.spawn(self._proxy.link(self))

    def connection_lost(self, exc: Exception | None) -> None:
        self._proxy.clients.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # the rest of a request we answered 503
        if self.peer is None:
            self._pending += data
        else:
            super().data_received(data)

    def linked(self, server: _Pipe) -> None:
        """Join with the replica's side and send what arrived meanwhile."""
        assert self.transport is not None and server.transport is not None
        self.peer, server.peer = server, self
        if self._pending:
            server.transport.write(bytes(self._pending))
            self._pending.clear()
        if self.eof:
            server.transport.write_eof()

    def reject(self, response: bytes, *, linger: float) -> None:
        """Answer ``response`` and close: after the client closes, or ``linger`` s."""
        assert self.transport is not None
        self._rejected = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(linger, self.transport.close)


class Proxy:
    """The listening socket and the balancer; ``link`` runs once per client connection."""

    def __init__(
        self,
        balancer: Balancer,
        *,
        connect_timeout: float,
        log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
    ) -> None:
        self.balancer = balancer
        self._connect_timeout = connect_timeout
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self.clients: set[_ClientSide] = set()
        self._unavailable = unavailable_response()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def link(self, client: _ClientSide) -> None:
        """Connect ``client`` to the first replica in turn that accepts; 503 if none does."""
        loop = asyncio.get_running_loop()
        for upstream in self.balancer.candidates():
            try:
                _, server = await asyncio.wait_for(
                    loop.create_connection(_Pipe, upstream.host, upstream.port),
                    timeout=self._connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                if self.balancer.mark_down(upstream):
                    self._log(f"veto proxy: replica {upstream} refused a connection ({exc!r})")
                continue
            if self.balancer.mark_up(upstream):
                self._log(f"veto proxy: replica {upstream} accepts connections again")
            if client.closed:
                assert server.transport is not None
                server.transport.close()
                return
            client.linked(server)
            return
        if not client.closed:
            client.reject(self._unavailable, linger=1.0)

    async def serve(self, host: str, port: int, *, stop: asyncio.Event) -> None:
        """Listen on ``host:port`` until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _ClientSide(self), host, port, reuse_address=True, backlog=1024
        )
        upstreams = ", ".join(str(u) for u in self.balancer.upstreams)
        self._log(f"veto proxy: {host}:{port} -> {upstreams}")
        await stop.wait()
        # Stop accepting, then drop open connections (an idle keep-alive one would hold the
        # shutdown forever); the replicas are stopped after the proxy.
        server.close()
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.close()
        await asyncio.wait_for(server.wait_closed(), timeout=5.0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="veto proxy",
        description="Balance TCP connections round-robin over service replicas "
        "(what `veto up --replicas N` runs on --port).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    p.add_argument("--port", type=_port_arg, required=True, help="the one address's port")
    p.add_argument(
        "--upstream",
        type=_upstream_arg,
        action="append",
        required=True,
        help="a replica as HOST:PORT; repeat for each",
    )
    p.add_argument(
        "--down-seconds", type=float, default=2.0, help="a refusing replica goes last (2)"
    )
    p.add_argument("--connect-timeout", type=float, default=2.0, help="seconds (2)")
    return p


def _port_arg(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {port}")
    return port


def _upstream_arg(text: str) -> Upstream:
    try:
        return parse_upstream(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--upstream {text!r}: want HOST:PORT ({exc})") from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    """Entry point of ``veto proxy``: serve until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    proxy = Proxy(
        Balancer(args.upstream, down_seconds=args.down_seconds),
        connect_timeout=args.connect_timeout,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await proxy.serve(args.host, args.port, stop=stop)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run())
    except OSError as exc:  # the port is taken
        print(f"veto proxy: error: {exc}", file=sys.stderr)
        return 1
    return 0
