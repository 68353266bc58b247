"""Thin HTTP handlers: parse, call, map. Limits come from the settings, so the router is
built per app."""

# No `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime.

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import ApiKey, DeskDep, RecommenderDep, ServicesDep
from service.errors import error_body
from service.schemas import FeedbackBatch, FeedbackResult, Health, Recommendations, SimilarItems
from service.settings import ServiceSettings
from veto.ids import ID_PATTERN

_MAX_EXCLUDES = 1000


def build_router(settings: ServiceSettings) -> APIRouter:
    """The v1 API, health and metrics routes."""
    router = APIRouter()
    UserId = Annotated[str, Path(pattern=ID_PATTERN)]
    ItemId = Annotated[str, Path(pattern=ID_PATTERN)]
    K = Annotated[int, Query(ge=1, le=settings.max_k)]

    @router.get("/v1/users/{user_id}/recommendations", response_model=Recommendations)
    async def recommendations(
        user_id: UserId,
        recommender: RecommenderDep,
        k: K = 10,
        exclude: Annotated[list[str], Query(max_length=_MAX_EXCLUDES)] = [],  # noqa: B006
        category: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        include_seen: bool = False,
    ) -> Response:
        found = await recommender.recommend(
            user_id, k=k, exclude=exclude, category=category, include_seen=include_seen
        )
        # Already a validated model: serialise once, skip FastAPI's second validation pass.
        return Response(found.model_dump_json(), media_type="application/json")

    @router.post("/v1/feedback", response_model=FeedbackResult)
    async def feedback(
        batch: FeedbackBatch,
        desk: DeskDep,
        services: ServicesDep,
        background: BackgroundTasks,
        _: ApiKey,
    ) -> FeedbackResult:
        result, written = await desk.submit(batch)
        # Queued after the response is sent; measured by the probe's own task.
        background.add_task(services.probe.offer, written.new_events)
        return result

    @router.get("/v1/items/{item_id}/similar", response_model=SimilarItems)
    async def similar(item_id: ItemId, recommender: RecommenderDep, k: K = 10) -> SimilarItems:
        return await recommender.similar(item_id, k=k)

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", response_model=Health)
    async def readyz(services: ServicesDep) -> Response:
        model = services.holder.current
        if model is None:
            body = error_body("not_ready", "no model version loaded yet")
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        if not await services.store.ping():
            body = error_body("not_ready", "Redis does not answer")
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(Health(status="ready", model_version=model.number).model_dump())

    @router.get("/metrics", include_in_schema=False)
    async def metrics(services: ServicesDep) -> Response:
        data = generate_latest(services.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return router
