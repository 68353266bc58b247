"""The HTTP edge of the error hierarchy: status codes and the one JSON error shape

    {"error": {"code": str, "message": str, "details": any}}

for Veto's errors, FastAPI's own validation errors, unknown routes and methods, and anything
unhandled. Two service-only errors live here because only HTTP gives them meaning:

    VetoError
    ├── NotFound         an item id in a URL that the current model does not know (404)
    └── Unauthorized     a missing or wrong API key (401)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from veto.errors import (
    ArtifactError,
    ConfigError,
    InvalidInput,
    StoreUnavailable,
    TooLarge,
    VetoError,
)

log = logging.getLogger(__name__)


class NotFound(VetoError):
    code = "not_found"


class Unauthorized(VetoError):
    code = "unauthorized"


# Most specific first: the first match wins.
_STATUS: tuple[tuple[type[VetoError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (StoreUnavailable, 503),
    (ArtifactError, 503),
    (ConfigError, 500),
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def status_of(exc: VetoError) -> int:
    """The HTTP status of a Veto error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one JSON error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def validation_details(errors: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
    """FastAPI/pydantic errors as a flat list; an event's errors carry its batch index."""
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())]
        location = str(loc[0]) if loc else "request"
        rest = loc[1:]
        index: int | None = None
        if len(rest) >= 2 and rest[0] == "events" and isinstance(rest[1], int):
            index, rest = rest[1], rest[2:]
        elif len(rest) == 2 and isinstance(rest[1], int):
            # One element of a list parameter (``exclude``): the list is the field.
            index, rest = rest[1], rest[:1]
        field = ".".join(str(p) for p in rest) or location
        out.append(
            {"location": location, "index": index, "field": field, "message": err.get("msg", "")}
        )
    return {"errors": out}


def install(
    app: FastAPI,
    *,
    retry_after_seconds: int,
    on_invalid_feedback: Callable[[int], None] | None = None,
) -> None:
    """Register the handlers that turn every failure into the one JSON error shape;
    ``on_invalid_feedback`` is told how many events of a malformed feedback body were bad."""

    async def on_veto_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VetoError)
        status = status_of(exc)
        headers = {"Retry-After": str(retry_after_seconds)} if status == 503 else None
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=status, headers=headers
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc.errors())
        if on_invalid_feedback is not None and request.url.path == "/v1/feedback":
            on_invalid_feedback(len({e["index"] for e in details["errors"]}))
        return JSONResponse(
            error_body("invalid_input", "invalid request", details),
            status_code=422,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (bytes that are not UTF-8 JSON):
            # the same 422 as any other malformed body, as documented in the spec.
            return JSONResponse(
                error_body("invalid_input", "request body is not valid JSON"), status_code=422
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(VetoError, on_veto_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unhandled)
