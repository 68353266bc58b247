"""``GET /v1/users/{user_id}/recommendations`` without the framework's per-request machinery,
for the requests that need none of it.

FastAPI resolves a route's parameters anew on every request (dependency solving, one validation
per parameter, a sub-response): about a quarter of a request's CPU once the ranking was batched
(README, "Serving: before and after batching"). ``RecommendationsFastPath`` answers the request
itself when every parameter comes in a plain form it checks exactly as the route declares it
(the id pattern, k's bounds, at most ``MAX_EXCLUDES`` excludes, a category of 1 to 128
characters, ``true``/``false``); anything else (an unknown or repeated parameter, another
spelling of a number or a boolean, a path prefix, any error) goes on to the FastAPI route, which
stays the API's definition: its OpenAPI entry, its validation, its error answers. A request the
fast path takes is validated once, by it; a Veto error it meets (an unknown category, no model
yet) is answered by ``service.errors.answer``, the route handler's own answer.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import answer
from service.recommender import Recommender
from service.routes import MAX_CATEGORY_LENGTH, MAX_EXCLUDES, RECOMMENDATIONS_PATH
from veto.errors import VetoError
from veto.ids import ID_PATTERN

_PATH = re.compile(RECOMMENDATIONS_PATH.replace("{user_id}", "([^/]+)"))
_ID = re.compile(ID_PATTERN)
_K = re.compile(r"[1-9][0-9]{0,5}")
_BOOLEANS = {"true": True, "false": False}


class RecommendationsFastPath:
    """Answers plain recommendation requests with ``recommender``; passes the rest on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        recommender: Recommender,
        route: BaseRoute,
        max_k: int,
        retry_after_seconds: int,
    ) -> None:
        self.app = app
        self.recommender = recommender
        self.route = route  # what request timing labels the answer with, as the router does
        self.max_k = max_k
        self.retry_after_seconds = retry_after_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ask = _ask(scope, max_k=self.max_k)
        if ask is not None:
            user_id, k, exclude, category, include_seen = ask
            scope["route"] = self.route
            response: Response
            try:
                found = await self.recommender.recommend(
                    user_id, k=k, exclude=exclude, category=category, include_seen=include_seen
                )
            except VetoError as exc:
                # Answered here as the route's handler would: computing it again through the
                # route would run (and count) the request twice.
                response = answer(
                    exc,
                    method="GET",
                    path=scope["path"],
                    retry_after_seconds=self.retry_after_seconds,
                )
            else:
                response = Response(found.to_json(), media_type="application/json")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_Ask = tuple[str, int, list[str], str | None, bool]


def _ask(scope: Scope, *, max_k: int) -> _Ask | None:
    """The request's parameters when all are plain and valid, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    match = _PATH.fullmatch(scope["path"])
    if match is None or not _ID.fullmatch(user_id := match.group(1)):
        return None
    k, exclude, category, include_seen = 10, [], None, False
    seen: set[str] = set()
    # As Starlette reads a query string.
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if name == "exclude":
            if not _ID.fullmatch(value):
                return None
            exclude.append(value)
            continue
        if name in seen:
            return None
        seen.add(name)
        if name == "k" and _K.fullmatch(value) and int(value) <= max_k:
            k = int(value)
        elif name == "category" and 1 <= len(value) <= MAX_CATEGORY_LENGTH:
            category = value
        elif name == "include_seen" and value in _BOOLEANS:
            include_seen = _BOOLEANS[value]
        else:
            return None
    if len(exclude) > MAX_EXCLUDES:
        return None
    return user_id, k, exclude, category, include_seen
