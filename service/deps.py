"""FastAPI dependencies as ``Annotated`` aliases; everything comes from the ``Services``
built once by ``service.app.create_app``. They are ``async def`` on purpose: FastAPI runs a
plain ``def`` dependency in a worker thread, a hop per request for nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.feedback import FeedbackDesk
from service.feedback_store import FeedbackStore
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder
from service.recommender import Recommender
from service.responsiveness import ResponsivenessProbe


@dataclass(frozen=True)
class Services:
    """The wired components of one service process."""

    holder: ModelHolder
    store: FeedbackStore
    metrics: ServiceMetrics
    recommender: Recommender
    desk: FeedbackDesk
    probe: ResponsivenessProbe


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# Straight from the request, not through ServicesDep: one dependency less to solve on the
# hot path.
async def get_recommender(request: Request) -> Recommender:
    services: Services = request.app.state.services
    return services.recommender


async def get_desk(request: Request) -> FeedbackDesk:
    services: Services = request.app.state.services
    return services.desk


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
DeskDep = Annotated[FeedbackDesk, Depends(get_desk)]
