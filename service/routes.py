"""Thin HTTP handlers: parse, call, map. Limits come from the settings, so the router is
built per app."""

# No `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import DeskDep, RecommenderDep, ServicesDep
from service.errors import error_response
from service.schemas import (
    ErrorBody,
    FeedbackBatch,
    FeedbackResult,
    Health,
    Id,
    Recommendations,
    SimilarItems,
)
from veto.ids import ID_PATTERN
from veto.settings import ServiceSettings

# The longest valid URL (this many excludes of 128 id characters, ":" and "@" percent-encoded,
# about 40 KB) must stay under the HTTP parser's 64 KiB request-line limit, which answers a
# bare, undocumented 400 (1000 excludes did not fit).
MAX_EXCLUDES = 100
MAX_CATEGORY_LENGTH = 128
RECOMMENDATIONS_PATH = "/v1/users/{user_id}/recommendations"
# The X-API-Key header as the spec declares it (feedback and the catalog writes). The key is
# checked by service.middleware.ApiKeyGuard, before the body is read; routes only document it.
API_KEY_HEADER: dict[str, Any] = {
    "name": "x-api-key",
    "in": "header",
    "required": False,
    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "X-Api-Key"},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error answers in the one error shape (Retry-After on 503)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        doc: dict[str, Any] = {"model": ErrorBody}
        if status == 503:
            doc["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        out[status] = doc
    return out


def build_router(settings: ServiceSettings) -> APIRouter:
    """The v1 API, health and metrics routes."""
    router = APIRouter()
    UserId = Annotated[str, Path(pattern=ID_PATTERN)]
    ItemId = Annotated[str, Path(pattern=ID_PATTERN)]
    K = Annotated[int, Query(ge=1, le=settings.max_k)]

    @router.get(
        RECOMMENDATIONS_PATH,
        response_model=Recommendations,
        responses=error_responses(422, 503),
    )
    async def recommendations(
        user_id: UserId,
        recommender: RecommenderDep,
        k: K = 10,
        # Item-level pattern, the only check of the ids: documents (and, with the count,
        # bounds) the longest valid URL.
        exclude: Annotated[list[Id], Query(max_length=MAX_EXCLUDES)] = [],  # noqa: B006
        category: Annotated[str | None, Query(min_length=1, max_length=MAX_CATEGORY_LENGTH)] = None,
        include_seen: bool = False,
    ) -> Response:
        found = await recommender.recommend(
            user_id, k=k, exclude=exclude, category=category, include_seen=include_seen
        )
        # Serialised once, here: FastAPI would validate the answer again against the model.
        return Response(found.to_json(), media_type="application/json")

    @router.post(
        "/v1/feedback",
        response_model=FeedbackResult,
        responses=error_responses(401, 413, 422, 503),
        openapi_extra={"parameters": [API_KEY_HEADER]},
    )
    async def feedback(
        batch: FeedbackBatch, desk: DeskDep, services: ServicesDep, background: BackgroundTasks
    ) -> FeedbackResult:
        result, written = await desk.submit(batch)
        # Queued after the response is sent; measured by the probe's own task.
        background.add_task(services.probe.offer, written.new_events)
        return result

    @router.get(
        "/v1/items/{item_id}/similar",
        response_model=SimilarItems,
        responses=error_responses(404, 422, 503),
    )
    async def similar(item_id: ItemId, recommender: RecommenderDep, k: K = 10) -> SimilarItems:
        return await recommender.similar(item_id, k=k)

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", response_model=Health, responses=error_responses(503))
    async def readyz(services: ServicesDep) -> Response:
        model = services.holder.current
        if model is None:
            return _not_ready("no model version loaded yet")
        if not await services.store.ping():
            return _not_ready("Redis does not answer")
        return JSONResponse(Health(status="ready", model_version=model.number).model_dump())

    @router.get("/metrics", include_in_schema=False)
    async def metrics(services: ServicesDep) -> Response:
        data = generate_latest(services.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return router


def _not_ready(message: str) -> JSONResponse:
    return error_response(503, code="not_ready", message=message, headers={"Retry-After": "1"})
