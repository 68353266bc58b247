"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request timing per
route template, the API key on writes, and the request body size limit."""

from __future__ import annotations

import hmac
import re
import time

from prometheus_client import Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import Unauthorized, response_for
from service.metrics import ServiceMetrics
from veto.errors import TooLarge


class RequestTiming:
    """Observes every HTTP request in ``veto_service_request_duration_seconds``."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.histogram = metrics.request_duration
        # The labelled children, looked up once: ``labels()`` takes a lock and builds a key.
        self._children: dict[tuple[str, str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # The template, not the path: user and item ids never become label values.
            key = (getattr(route, "path", None) or "unmatched", scope["method"], str(status))
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.histogram.labels(*key)
            child.observe(time.perf_counter() - started)


class BodyLimit:
    """Rejects request bodies above ``max_bytes`` with 413 before any parsing."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(scope, receive, send, self.max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(scope, receive, send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ApiKeyGuard:
    """Refuses requests to ``routes`` (method, path template such as ``/v1/items/{item_id}``)
    without the configured ``X-API-Key`` (401) before their body is read or parsed: an
    unauthenticated client learns nothing about its body. The only check of the key (the
    routes merely document the header). A template matches the paths the router matches it
    with (Starlette's own compiled pattern), so no spelling of a path reaches the route
    unguarded."""

    def __init__(
        self, app: ASGIApp, *, api_key: str | None, routes: frozenset[tuple[str, str]]
    ) -> None:
        self.app = app
        self.expected = None if api_key is None else api_key.encode()
        self.routes: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
            (method, compile_path(template)[0]) for method, template in sorted(routes)
        )

    def _guards(self, method: str, path: str) -> bool:
        return any(m == method and pattern.match(path) for m, pattern in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or not self._guards(scope["method"], _route_path(scope))
        ):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-api-key", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        refused = response_for(Unauthorized("missing or wrong X-API-Key"))
        await refused(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` a proxy or a mount puts in
    front (as Starlette's routing strips it), so that a prefix cannot slip past the guard."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    error = TooLarge(f"request body above {limit} bytes", details={"max_body_bytes": limit})
    await response_for(error)(scope, receive, send)
