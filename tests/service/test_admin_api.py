"""The admin API the console and scripts share: the served model, the versions on disk, and
publishing one (rollback or forward) by ``veto versions publish``'s rule, behind the API key,
in the one error shape, audited; a refused publish writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.service.svc_helpers import Serve, redis_state
from tests.version_factory import write_demo_version
from veto import keys
from veto.artifacts import ITEM_VECTORS, version_dir
from veto.cli.redis_server import RedisServer

pytestmark = pytest.mark.anyio
KEY = "adm1n"
KEYED = {"X-API-Key": KEY}


def _tamper(root: Path, version: int) -> None:
    path = version_dir(root, version) / ITEM_VECTORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_model_reports_the_served_version_its_parent_watermark_and_lag(
    serve: Serve, publish_version: Callable[..., Path], artifacts_dir: Path
) -> None:
    write_demo_version(artifacts_dir, 1)
    write_demo_version(artifacts_dir, 2, parent=1, ingest_time=1_700_000_000.0)
    publish_version(2)
    async with serve() as (app, client):
        body = (await client.get("/v1/admin/model")).json()
        swapped = app.state.reloader.swapped_at
    served = body["served"]
    assert body["published"] == 2 and body["redis"] == "ok"
    assert served["version"] == 2 and served["parent"] == 1
    assert served["n_items"] == 200 and served["index_type"] == "flat"
    assert served["watermark_ingest_time"] == 1_700_000_000.0
    assert served["swapped_at"] == swapped
    assert served["feedback_to_model_lag_seconds"] == pytest.approx(swapped - 1_700_000_000.0)


async def test_model_while_starting_has_nothing_served(serve: Serve) -> None:
    async with serve() as (_, client):
        body = (await client.get("/v1/admin/model")).json()
        versions = (await client.get("/v1/admin/versions")).json()
    assert body == {"served": None, "published": None, "redis": "ok"}
    assert versions == {"versions": [], "published": None}  # empty artifacts dir


async def test_versions_lists_every_version_oldest_first_with_the_marks(
    serve: Serve, publish_version: Callable[..., Path], artifacts_dir: Path
) -> None:
    write_demo_version(artifacts_dir, 1)
    write_demo_version(artifacts_dir, 2, parent=1)
    (version_dir(artifacts_dir, 3)).mkdir()  # a version without a manifest: unreadable
    publish_version(2)
    async with serve() as (_, client):
        body = (await client.get("/v1/admin/versions")).json()
    rows = body["versions"]
    assert [r["version"] for r in rows] == [1, 2, 3] and body["published"] == 2
    assert rows[1]["parent"] == 1 and rows[1]["published"] and rows[1]["served"]
    assert not rows[0]["published"] and not rows[0]["served"] and rows[0]["error"] is None
    assert rows[2]["error"] and rows[2]["created_at"] is None


async def test_publish_rolls_back_swaps_this_replica_and_writes_an_audit_line(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_demo_version(artifacts_dir, 1)
    write_demo_version(artifacts_dir, 2, parent=1)
    publish_version(2)
    caplog.set_level(logging.WARNING, logger="veto.audit")
    async with serve(api_key=KEY) as (app, client):
        resp = await client.post("/v1/admin/publish", json={"version": 1}, headers=KEYED)
        served = app.state.services.holder.current.number
        ready = (await client.get("/readyz")).json()
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"published": 1, "previous": 2, "served": 1}
    assert served == 1 and ready["model_version"] == 1
    assert redis_client.get(keys.MODEL_POINTER) == "1"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "veto.audit"]
    assert "publish version=1" in line and "done (pointer was 2)" in line


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"version": 1}),
        ({"X-API-Key": "wrong"}, {"version": 1}),
        ({"X-API-Key": ""}, {"version": 1}),
        ({"X-API-Key": "wrong"}, {"version": "not even checked"}),
    ],
    ids=["no-key", "wrong-key", "empty-key", "wrong-key-bad-body"],
)
async def test_publish_without_the_key_is_a_401_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_client: redis.Redis,
    headers: dict[str, str],
    body: Any,
) -> None:
    write_demo_version(artifacts_dir, 1)
    publish_version(2)
    before = redis_state(redis_client)
    async with serve(api_key=KEY) as (app, client):
        resp = await client.post("/v1/admin/publish", json=body, headers=headers)
        served = app.state.services.holder.current.number
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert redis_state(redis_client) == before and served == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": None},
        {"version": "1"},
        {"version": 1.0},
        {"version": 1.5},
        {"version": True},
        {"version": 0},
        {"version": -1},
        {"version": 100_000_000},
        {"version": 2**70},
        {"version": 1, "force": True},
        [1],
        "1",
    ],
    ids=repr,
)
async def test_publish_with_a_malformed_or_out_of_range_version_is_a_422_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_client: redis.Redis,
    body: Any,
) -> None:
    write_demo_version(artifacts_dir, 1)
    publish_version(2)
    before = redis_state(redis_client)
    async with serve(api_key=KEY) as (_, client):
        resp = await client.post("/v1/admin/publish", json=body, headers=KEYED)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_input" and error["details"]["errors"]
    assert redis_state(redis_client) == before


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"null"], ids=repr)
async def test_publish_with_an_empty_or_broken_body_is_a_422_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    redis_client: redis.Redis,
    content: bytes,
) -> None:
    publish_version(1)
    before = redis_state(redis_client)
    async with serve(api_key=KEY) as (_, client):
        resp = await client.post(
            "/v1/admin/publish",
            content=content,
            headers={**KEYED, "Content-Type": "application/json"},
        )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_input"
    assert redis_state(redis_client) == before


async def test_publish_of_an_unknown_version_is_a_404_audited_and_writes_nothing(
    serve: Serve,
    publish_version: Callable[..., Path],
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish_version(1)
    before = redis_state(redis_client)
    caplog.set_level(logging.WARNING, logger="veto.audit")
    async with serve(api_key=KEY) as (_, client):
        resp = await client.post("/v1/admin/publish", json={"version": 7}, headers=KEYED)
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "unknown_version"
    assert error["details"] == {"version": 7, "versions": [1]}
    assert error["message"] == "no version 7 on disk (versions: 1)"  # no server path
    assert redis_state(redis_client) == before
    (line,) = [r.getMessage() for r in caplog.records if r.name == "veto.audit"]
    assert "publish version=7" in line and "refused" in line


async def test_publish_of_a_tampered_version_is_a_409_and_the_old_one_keeps_serving(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_client: redis.Redis,
) -> None:
    write_demo_version(artifacts_dir, 1)
    publish_version(2)
    _tamper(artifacts_dir, 1)
    before = redis_state(redis_client)
    async with serve(api_key=KEY) as (app, client):
        resp = await client.post("/v1/admin/publish", json={"version": 1}, headers=KEYED)
        served = app.state.services.holder.current.number
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "version_refused"
    assert "sha256" in resp.json()["error"]["message"]
    assert redis_state(redis_client) == before and served == 2


async def test_with_redis_down_the_model_says_so_and_publish_is_a_503(
    serve: Serve,
    publish_version: Callable[..., Path],
    artifacts_dir: Path,
    redis_server: RedisServer,
) -> None:
    write_demo_version(artifacts_dir, 1)
    publish_version(2)
    async with serve(api_key=KEY) as (app, client):
        redis_server.stop(kill=True)
        try:
            model = await client.get("/v1/admin/model")
            versions = await client.get("/v1/admin/versions")
            publish = await client.post("/v1/admin/publish", json={"version": 1}, headers=KEYED)
        finally:
            redis_server.start()
        served = app.state.services.holder.current.number
    assert model.status_code == 200
    assert model.json()["redis"] == "unavailable" and model.json()["published"] is None
    assert model.json()["served"]["version"] == 2
    assert versions.status_code == 200 and versions.json()["published"] is None
    assert [v["version"] for v in versions.json()["versions"]] == [1, 2]
    assert publish.status_code == 503 and publish.headers["Retry-After"] == "1"
    assert served == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/admin/publish"), ("PUT", "/v1/admin/publish"), ("POST", "/v1/admin/model")],
)
async def test_wrong_methods_on_admin_routes_are_405(serve: Serve, method: str, path: str) -> None:
    async with serve(api_key=KEY) as (_, client):
        resp = await client.request(method, path, headers=KEYED)
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


async def test_the_admin_reads_write_nothing_and_an_unknown_admin_path_is_a_404(
    serve: Serve, publish_version: Callable[..., Path], redis_client: redis.Redis
) -> None:
    publish_version(1)
    before = redis_state(redis_client)
    async with serve(api_key=KEY) as (_, client):
        reads = [
            await client.get("/v1/admin/model", params={"version": "x"}),
            await client.get("/v1/admin/versions", params={"limit": "-1"}),
            await client.get("/v1/admin/live", params={"window": "0"}),
        ]
        unknown = await client.get("/v1/admin/nothing-here")
        empty = await client.get("/v1/admin/")
    assert [r.status_code for r in reads] == [200, 200, 200]  # no parameters: extra ones ignored
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert empty.status_code == 404
    assert redis_state(redis_client) == before
