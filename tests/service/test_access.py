"""Access control and input limits (issue 6 item 4) not already covered by test_feedback_api
(missing/wrong/right key, byte and batch limits, malformed events and bodies): the open mode,
the key checked before the body (also behind a root path), reads that need no key, bad ids in
URLs, and the longest valid URL through a real ``veto serve``."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis
from pydantic import SecretStr

from service.app import create_app
from tests.processes import ServeProcess, veto_env
from tests.service.svc_helpers import PARTITIONS, Serve, event, written_keys
from veto.keys import UserKeys
from veto.settings import ServiceSettings

pytestmark = pytest.mark.anyio


async def test_without_a_configured_key_feedback_is_open(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    async with serve(api_key=None) as (_, client):
        bare = await client.post("/v1/feedback", json={"events": [event("open", "i1", "like")]})
        # A key sent anyway is not an error either.
        keyed = await client.post(
            "/v1/feedback",
            json={"events": [event("open", "i2", "like")]},
            headers={"X-API-Key": "anything"},
        )
    assert bare.status_code == 200 and keyed.status_code == 200
    assert redis_client.smembers(UserKeys("open", PARTITIONS).liked) == {"i1", "i2"}


@pytest.mark.parametrize(
    "given", ["", "S3CRET", "s3cret ", "s3cre", "s3cret" * 50, "s3cr\u00e9t"], ids=repr
)
async def test_near_miss_keys_are_refused_and_checked_before_the_body(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis, given: str
) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        good_body = await client.post(
            "/v1/feedback",
            json={"events": [event("kay", "i1", "like")]},
            headers=[(b"X-API-Key", given.encode())],
        )
        # A wrong key gets 401 before the body is read: no validation report, no size check.
        bad_body = await client.post(
            "/v1/feedback",
            content=b"{not json",
            headers={"X-API-Key": "nope", "content-type": "application/json"},
        )
        too_large = await client.post(
            "/v1/feedback", content=b"x" * 2_000_000, headers={"X-API-Key": "nope"}
        )
    assert good_body.status_code == 401 and good_body.json()["error"]["code"] == "unauthorized"
    assert bad_body.status_code == 401 and too_large.status_code == 401
    assert written_keys(redis_client) == []


async def test_a_write_behind_a_root_path_still_needs_the_key(
    settings: ServiceSettings, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    """Behind a proxy or a mount the request path carries a prefix the router strips; the
    guard, the only check of the key, must see the same path."""
    publish_version(1)
    app = create_app(settings.model_copy(update={"api_key": SecretStr("s3cret")}))
    body = {"events": [event("kay", "i1", "like")]}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/veto")
        async with httpx.AsyncClient(transport=transport, base_url="http://veto") as client:
            bare = await client.post("/veto/v1/feedback", json=body)
            assert written_keys(redis_client) == []
            keyed = await client.post(
                "/veto/v1/feedback", json=body, headers={"X-API-Key": "s3cret"}
            )
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "unauthorized"
    assert keyed.status_code == 200


async def test_reads_need_no_key(serve: Serve, publish_version: Callable[..., Path]) -> None:
    publish_version(1)
    async with serve(api_key="s3cret") as (_, client):
        recs = await client.get("/v1/users/u1/recommendations?k=3")
        similar = await client.get("/v1/items/i1/similar?k=3")
    assert recs.status_code == 200 and similar.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/a%7Bb%7D/recommendations",  # a brace would break the hash tag
        "/v1/users/a%7Cb/recommendations",  # "|" is the history separator
        "/v1/users/a%0Ab/recommendations",
        "/v1/users/" + "u" * 129 + "/recommendations",
        "/v1/users/%C3%A9/recommendations",
        "/v1/items/i%7B1%7D/similar",
        "/v1/users/u/recommendations?exclude=i1&exclude=" + "x" * 129,
    ],
)
async def test_bad_ids_in_urls_get_422_before_any_redis_read_or_write(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis, path: str
) -> None:
    publish_version(1)
    async with serve() as (_, client):
        before = _user_reads(redis_client)
        resp = await client.get(path)
        after_bad = _user_reads(redis_client)
        good = await client.get("/v1/users/u/recommendations?exclude=i1")
        after_good = _user_reads(redis_client)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_input"
    assert written_keys(redis_client) == []
    # The bad request never reached a user's keys; the control request did.
    assert after_bad == before
    assert good.status_code == 200 and after_good > after_bad


def _user_reads(client: redis.Redis) -> int:
    """Calls of the commands that read a user's or the popular keys (scripts, ZREVRANGE)."""
    stats = client.info("commandstats")
    names = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_zrevrange")
    return sum(int(stats[n]["calls"]) for n in names if n in stats)


def test_the_longest_valid_url_is_served_by_a_real_process(
    publish_version: Callable[..., Path], redis_url: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    """100 excludes of 128 characters, ":" and "@" percent-encoded (~40 KB of URL): within
    the HTTP parser's 64 KiB request line; one more exclude is a 422 in the error shape."""
    publish_version(1)
    env = veto_env(redis_url=redis_url, artifacts_dir=str(artifacts_dir))
    proc = ServeProcess(env=env, log_path=tmp_path / "serve.log").start()
    try:
        proc.wait_ready()
        excludes = [f"i:{n:04d}@" + "x" * 121 for n in range(100)]
        assert all(len(x) == 128 for x in excludes)
        resp = _get(
            proc.port,
            "/v1/users/u1/recommendations?"
            + urlencode([("k", "5"), ("exclude", "i1"), *[("exclude", x) for x in excludes[:99]]]),
        )
        too_many = _get(
            proc.port,
            "/v1/users/u1/recommendations?"
            + urlencode([("exclude", "i1"), *[("exclude", x) for x in excludes]]),
        )
    finally:
        proc.stop()
    status, body = resp
    assert status == 200, body[:300]
    items = [x["item_id"] for x in json.loads(body)["items"]]
    assert len(items) == 5 and "i1" not in items
    assert too_many[0] == 422, too_many[1][:300]


def _get(port: int, target: str) -> tuple[int, str]:
    """A GET with a raw request target, sent as it is."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()
