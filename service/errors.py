"""The HTTP edge of the error hierarchy: status codes and the one JSON error shape

    {"error": {"code": str, "message": str, "details": any}}

for Veto's errors, FastAPI's own validation errors, unknown routes and methods, and anything
unhandled. Bad input names each bad field as a ``FieldError`` in ``details["errors"]``. Two
service-only errors live here because only HTTP gives them meaning:

    VetoError
    ├── NotFound         an item id in a URL that does not exist, or has no vector (404)
    ├── Unauthorized     a missing or wrong API key (401)
    └── VersionRefused   a model version asked to be published that fails validation (409)

``veto.errors.UnknownVersion`` (a version number not on disk) is a 404 here, not the 503 of
the other artifact errors, which are the service's own trouble.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from veto.errors import (
    ArtifactError,
    ConfigError,
    InvalidInput,
    StoreUnavailable,
    TooLarge,
    UnknownVersion,
    VetoError,
)

log = logging.getLogger(__name__)


class NotFound(VetoError):
    code = "not_found"


class Unauthorized(VetoError):
    code = "unauthorized"


class VersionRefused(VetoError):
    code = "version_refused"


class FieldError(TypedDict):
    """One bad field of a request, an entry of an invalid-input error's ``details["errors"]``."""

    location: str  # "query", "path", "body", ... or "request"
    index: int | None  # the event or item in a batch, or the element of a list parameter
    field: str
    message: str


# Most specific first: the first match wins.
_STATUS: tuple[tuple[type[VetoError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (UnknownVersion, 404),
    (VersionRefused, 409),
    (StoreUnavailable, 503),
    (ArtifactError, 503),
    (ConfigError, 500),
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
_FEEDBACK_PATH = "/v1/feedback"
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def status_of(exc: VetoError) -> int:
    """The HTTP status of a Veto error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(
    status: int,
    *,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An answer in the one JSON error shape (also an ASGI app, for the middleware)."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def response_for(exc: VetoError, *, retry_after_seconds: int = 1) -> JSONResponse:
    """The answer to a Veto error: its status, its code, Retry-After on a 503."""
    status = status_of(exc)
    headers = {"Retry-After": str(retry_after_seconds)} if status == 503 else None
    return error_response(
        status, code=exc.code, message=exc.message, details=exc.details, headers=headers
    )


def answer(exc: VetoError, *, method: str, path: str, retry_after_seconds: int) -> JSONResponse:
    """``response_for`` a request's Veto error, logged when it is the service's fault (5xx):
    what the route's handler and the recommendations fast path both answer."""
    response = response_for(exc, retry_after_seconds=retry_after_seconds)
    if response.status_code >= 500:
        log.warning("%s %s -> %d: %s", method, path, response.status_code, exc)
    return response


def invalid_fields(
    message: str, errors: Sequence[FieldError], *, kind: type[InvalidInput] = InvalidInput
) -> InvalidInput:
    """An invalid-input error naming every bad field."""
    return kind(message, details={"errors": list(errors)})


def validation_details(errors: Sequence[Any]) -> list[FieldError]:
    """FastAPI/pydantic errors as a flat list; an event's errors carry its batch index."""
    out: list[FieldError] = []
    for err in errors:
        loc = [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())]
        location = str(loc[0]) if loc else "request"
        rest = loc[1:]
        index: int | None = None
        if len(rest) >= 2 and rest[0] in ("events", "items") and isinstance(rest[1], int):
            index, rest = rest[1], rest[2:]
        elif len(rest) == 2 and isinstance(rest[1], int):
            # One element of a list parameter (``exclude``): the list is the field.
            index, rest = rest[1], rest[:1]
        field = ".".join(str(p) for p in rest) or location
        out.append(
            FieldError(location=location, index=index, field=field, message=err.get("msg", ""))
        )
    return out


def _rejected_events(exc: InvalidInput) -> int:
    """How many events of a refused feedback batch count as rejected: those its field errors
    name (a request-level error counts once), else the whole batch (TooLarge gives its size)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if details.get("errors"):
        return len({e["index"] for e in details["errors"]})
    return int(details.get("events", 1))


def _allowed_methods(request: Request, given: str | None) -> list[str]:
    """Every method the API serves the request's path with: Starlette's own 405 (``given``)
    names the first matching route's methods only, and the item path has a route per method.
    Read from the published spec (FastAPI's router classes are private), plus ``given``."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]  # the path the router matched (as middleware._route_path)
    methods = {m.strip() for m in (given or "").split(",") if m.strip()}
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(path):
            methods |= {name.upper() for name in operations if name.upper() in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")  # as Starlette serves every GET route
    return sorted(methods)


def install(
    app: FastAPI,
    *,
    retry_after_seconds: int,
    on_invalid_feedback: Callable[[int], None] | None = None,
) -> None:
    """Register the handlers that turn every failure into the one JSON error shape;
    ``on_invalid_feedback`` is told how many events of a refused feedback batch were bad
    (schema or catalog), the one place rejected feedback is counted."""

    async def on_veto_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VetoError)
        response = answer(
            exc,
            method=request.method,
            path=request.url.path,
            retry_after_seconds=retry_after_seconds,
        )
        if (
            on_invalid_feedback is not None
            and isinstance(exc, InvalidInput)
            and request.url.path == _FEEDBACK_PATH
        ):
            on_invalid_feedback(_rejected_events(exc))
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        invalid = invalid_fields("invalid request", validation_details(exc.errors()))
        return await on_veto_error(request, invalid)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (bytes that are not UTF-8 JSON):
            # the same 422 as any other malformed body, as documented in the spec.
            return error_response(
                422, code="invalid_input", message="request body is not valid JSON"
            )
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = _allowed_methods(request, (headers or {}).get("Allow"))
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return error_response(
            exc.status_code,
            code=_HTTP_CODES.get(exc.status_code, "http_error"),
            message=str(exc.detail),
            headers=headers,
        )

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, code="internal_error", message="internal server error")

    app.add_exception_handler(VetoError, on_veto_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unhandled)
