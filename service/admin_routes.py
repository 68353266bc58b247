"""Thin HTTP handlers of the admin API, what the console and scripts share: the served model,
the versions on disk, publishing one (rollback or forward) and the live metrics window.
Publishing is guarded by ``service.middleware.ApiKeyGuard`` (``GUARDED_ROUTES``); the reads
hold no personal data and need no key."""

# No `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime.

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.admin_desk import AdminDesk
from service.live_metrics import LiveMetrics
from service.routes import API_KEY_HEADER, error_responses
from service.schemas import LiveSeries, ModelStatus, Published, PublishRequest, Versions

MODEL_PATH = "/v1/admin/model"
VERSIONS_PATH = "/v1/admin/versions"
PUBLISH_PATH = "/v1/admin/publish"
LIVE_PATH = "/v1/admin/live"
GUARDED_ROUTES = frozenset({("POST", PUBLISH_PATH)})


async def get_admin_desk(request: Request) -> AdminDesk:
    desk: AdminDesk = request.app.state.admin_desk
    return desk


async def get_live_metrics(request: Request) -> LiveMetrics:
    live: LiveMetrics = request.app.state.live_metrics
    return live


AdminDeskDep = Annotated[AdminDesk, Depends(get_admin_desk)]
LiveMetricsDep = Annotated[LiveMetrics, Depends(get_live_metrics)]


def build_admin_router() -> APIRouter:
    """GET model, versions and live; POST publish."""
    router = APIRouter(tags=["admin"])

    @router.get(MODEL_PATH, response_model=ModelStatus)
    async def model_status(desk: AdminDeskDep) -> ModelStatus:
        return await desk.status()

    @router.get(VERSIONS_PATH, response_model=Versions)
    async def versions(desk: AdminDeskDep) -> Versions:
        return await desk.versions()

    @router.post(
        PUBLISH_PATH,
        response_model=Published,
        responses=error_responses(401, 404, 409, 413, 422, 503),
        openapi_extra={"parameters": [API_KEY_HEADER]},
    )
    async def publish(body: PublishRequest, desk: AdminDeskDep, request: Request) -> Published:
        by = request.client.host if request.client else "unknown"
        return await desk.publish(body.version, by=by)

    @router.get(LIVE_PATH, response_model=LiveSeries)
    async def live(metrics: LiveMetricsDep) -> LiveSeries:
        return metrics.series()

    return router
