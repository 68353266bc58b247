"""The recommendations fast path: it takes only requests whose every parameter it checks as the
route declares it, and answers them exactly as the FastAPI route does, errors in the route's
error shape; the rest is the route's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from service.fast_path import _ask
from tests.service.svc_helpers import Serve, event

pytestmark = pytest.mark.anyio

PLAIN = [
    "/v1/users/ann/recommendations",
    "/v1/users/ann/recommendations?k=7",
    "/v1/users/ann/recommendations?k=5&exclude=i3&exclude=i4&include_seen=true",
    "/v1/users/ann/recommendations?category=c2&include_seen=false&k=200",
    "/v1/users/u.1%3Ax@y-z/recommendations?exclude=a%3Ab",
    "/v1/users/stranger/recommendations?k=3",
]


def _scope(url: str, *, method: str = "GET", root_path: str = "") -> dict[str, Any]:
    path, _, query = url.partition("?")
    return {
        "type": "http",
        "method": method,
        "path": unquote(path),
        "root_path": root_path,
        "query_string": query.encode(),
    }


def test_plain_requests_are_parsed_as_the_route_declares_them() -> None:
    assert _ask(_scope(PLAIN[0]), max_k=200) == ("ann", 10, [], None, False)
    assert _ask(_scope(PLAIN[2]), max_k=200) == ("ann", 5, ["i3", "i4"], None, True)
    assert _ask(_scope(PLAIN[3]), max_k=200) == ("ann", 200, [], "c2", False)
    assert _ask(_scope(PLAIN[4]), max_k=200) == ("u.1:x@y-z", 10, ["a:b"], None, False)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/users/ann/recommendations?k=201",  # above max_k
        "/v1/users/ann/recommendations?k=0",
        "/v1/users/ann/recommendations?k=07",  # another spelling of 7
        "/v1/users/ann/recommendations?k=+7",
        "/v1/users/ann/recommendations?k=7&k=8",  # repeated
        "/v1/users/ann/recommendations?include_seen=1",
        "/v1/users/ann/recommendations?category=",
        "/v1/users/ann/recommendations?category=" + "c" * 129,
        "/v1/users/ann/recommendations?exclude=bad%20id",
        "/v1/users/ann/recommendations?exclude=",
        "/v1/users/ann/recommendations?" + "&".join(f"exclude=i{n}" for n in range(101)),
        "/v1/users/ann/recommendations?via=route",  # unknown parameter
        "/v1/users/bad%20user/recommendations",
        "/v1/users/" + "u" * 129 + "/recommendations",
        "/v1/users/ann/recommendations/",
        "/v1/users/ann/similar",
    ],
)
def test_anything_else_is_left_to_the_route(url: str) -> None:
    assert _ask(_scope(url), max_k=200) is None


def test_other_methods_and_prefixed_paths_are_left_to_the_route() -> None:
    assert _ask(_scope(PLAIN[0], method="HEAD"), max_k=200) is None
    assert _ask(_scope(PLAIN[0], root_path="/api"), max_k=200) is None


async def test_the_fast_path_answers_exactly_as_the_route(
    serve: Serve, publish_version: Callable[..., Path]
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        likes = [event("ann", f"i{n}", "like") for n in (1, 9, 17)]
        await client.post("/v1/feedback", json={"events": [*likes, event("ann", "i3", "dislike")]})
        for url in PLAIN:
            fast = await client.get(url)
            # An unknown parameter, which FastAPI ignores, sends the request to the route.
            routed = await client.get(url + ("&" if "?" in url else "?") + "via=route")
            assert fast.status_code == routed.status_code == 200, url
            assert fast.headers["content-type"] == routed.headers["content-type"]
            body, expected = fast.json(), routed.json()
            assert body.pop("request_id") != expected.pop("request_id")
            assert body == expected, url
        unknown = await client.get("/v1/users/ann/recommendations?category=nope")
        metrics = (await client.get("/metrics")).text
    # An error is the route's answer, in the API's error shape, and the request ran once:
    # 12 plain requests, one at a time, then the unknown category (one batch each).
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_input"
    assert unknown.json()["error"]["details"]["errors"][0]["field"] == "category"
    assert "veto_recommendation_batch_size_count 13.0" in metrics
    errored = 'route="/v1/users/{user_id}/recommendations",status="422"'
    assert f'veto_service_request_duration_seconds_count{{method="GET",{errored}}} 1.0' in metrics
    timed = 'route="/v1/users/{user_id}/recommendations",status="200"'
    assert f'veto_service_request_duration_seconds_count{{method="GET",{timed}}} 12.0' in metrics
