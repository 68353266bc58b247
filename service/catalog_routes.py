"""Thin HTTP handlers of the catalog: parse, call, map. The writes are guarded by
``service.middleware.ApiKeyGuard`` (``WRITE_ROUTES``), before their body is read."""

# No `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime.

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from service.catalog_desk import CatalogDesk
from service.routes import API_KEY_HEADER, error_responses
from service.schemas import Item, ItemBatch, ItemFields, ItemsWritten
from veto.ids import ID_PATTERN

ITEM_PATH = "/v1/items/{item_id}"
BATCH_PATH = "/v1/items:batch"
WRITE_ROUTES = frozenset({("PUT", ITEM_PATH), ("DELETE", ITEM_PATH), ("POST", BATCH_PATH)})


async def get_catalog_desk(request: Request) -> CatalogDesk:
    desk: CatalogDesk = request.app.state.catalog_desk
    return desk


CatalogDeskDep = Annotated[CatalogDesk, Depends(get_catalog_desk)]
# Checked before any Redis key is built from it, as for every id in a URL.
ItemId = Annotated[str, Path(pattern=ID_PATTERN)]
_KEYED = {"parameters": [API_KEY_HEADER]}


def build_catalog_router() -> APIRouter:
    """PUT, GET and DELETE of one item, and the batch upsert."""
    router = APIRouter()

    @router.put(
        ITEM_PATH,
        response_model=Item,
        responses=error_responses(401, 413, 422, 503),
        openapi_extra=_KEYED,
    )
    async def put_item(item_id: ItemId, fields: ItemFields, desk: CatalogDeskDep) -> Item:
        return await desk.put(item_id, fields)

    @router.get(ITEM_PATH, response_model=Item, responses=error_responses(404, 422, 503))
    async def get_item(item_id: ItemId, desk: CatalogDeskDep) -> Item:
        return await desk.get(item_id)

    @router.delete(
        ITEM_PATH,
        status_code=204,
        response_class=Response,
        responses=error_responses(401, 404, 422, 503),
        openapi_extra=_KEYED,
    )
    async def delete_item(item_id: ItemId, desk: CatalogDeskDep) -> Response:
        await desk.delete(item_id)
        return Response(status_code=204)

    @router.post(
        BATCH_PATH,
        response_model=ItemsWritten,
        responses=error_responses(401, 413, 422, 503),
        openapi_extra=_KEYED,
    )
    async def put_items(batch: ItemBatch, desk: CatalogDeskDep) -> ItemsWritten:
        return await desk.put_many(batch)

    return router
