"""Thin HTTP handlers of the user API: erasure and the access request. Both are personal
data, so both are guarded by ``service.middleware.ApiKeyGuard`` (``GUARDED_ROUTES``)."""

# No `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime.

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from service.routes import API_KEY_HEADER, error_responses
from service.schemas import Erased, UserData
from service.user_desk import UserDesk
from veto.ids import ID_PATTERN

USER_PATH = "/v1/users/{user_id}"
HISTORY_PATH = "/v1/users/{user_id}/history"
GUARDED_ROUTES = frozenset({("DELETE", USER_PATH), ("GET", HISTORY_PATH)})
MAX_PAGE = 1000  # records per page of an access request
MAX_CURSOR_LENGTH = 1024  # a cursor holds one history entry: far below this


async def get_user_desk(request: Request) -> UserDesk:
    desk: UserDesk = request.app.state.user_desk
    return desk


UserDeskDep = Annotated[UserDesk, Depends(get_user_desk)]
# Checked before any Redis key is built from it, as for every id in a URL.
UserId = Annotated[str, Path(pattern=ID_PATTERN)]
_KEYED = {"parameters": [API_KEY_HEADER]}


def build_user_router() -> APIRouter:
    """DELETE of a user and GET of their data."""
    router = APIRouter()

    @router.delete(
        USER_PATH,
        response_model=Erased,
        responses=error_responses(401, 422, 503),
        openapi_extra=_KEYED,
    )
    async def erase_user(user_id: UserId, desk: UserDeskDep) -> Erased:
        return await desk.erase(user_id)

    @router.get(
        HISTORY_PATH,
        response_model=UserData,
        responses=error_responses(401, 422, 503),
        openapi_extra=_KEYED,
    )
    async def user_history(
        user_id: UserId,
        desk: UserDeskDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR_LENGTH)] = None,
    ) -> UserData:
        return await desk.held(user_id, limit=limit, cursor=cursor)

    return router
