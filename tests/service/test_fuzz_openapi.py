"""Schemathesis against the service's own OpenAPI spec: a real ``veto serve`` process on a real
Redis with a real small model and an API key configured (and passed). Every generated request
must get a non-5xx answer whose status, content type, headers and body match the spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from service.app import GUARDED, create_app
from tests.processes import ServeProcess, veto_env
from tests.version_factory import small_world, write_demo_version
from veto import registry
from veto.cli.redis_server import RedisServer
from veto.settings import ServiceSettings

API_KEY = "fuzz-key"
# Settings that change the spec (limits in the parameters).
SHAPING: dict[str, Any] = {"max_k": 50}


@pytest.fixture(scope="module")
def service(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """``veto serve`` on the session Redis (emptied first) with version 1 published."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    tmp = tmp_path_factory.mktemp("fuzz")
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    write_demo_version(artifacts, 1, world=small_world(n_items=200, seed=5))
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    registry.publish(client, 1)
    client.close()
    env = veto_env(
        redis_url=redis_server.url,
        artifacts_dir=str(artifacts),
        api_key=API_KEY,
        max_k=str(SHAPING["max_k"]),
        max_body_bytes="4096",
        max_batch="20",
        responsiveness_sample_rate="0",
    )
    proc = ServeProcess(env=env, log_path=tmp / "serve.log").start()
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def _spec() -> dict[str, Any]:
    """The spec the served app publishes, built in-process at collection time (schemathesis's
    lazy ``from_fixture`` loader does not work with pytest 9); the settings that shape it
    (limits) match the served ones, and a test checks the two documents are equal."""
    app = create_app(ServiceSettings(redis_url="redis://127.0.0.1:1", **SHAPING))
    return app.openapi()


# Status codes the data checks accept. A schema-valid request may still get 422 (an id or
# category unknown to the live catalog, which no schema can express) or 413 (a valid batch
# above the byte limit); an invalid one may get 413 when it is also too large.
CHECKS = {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "413", "422"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "422"]},
}
schema = schemathesis.openapi.from_dict(
    _spec(), config=schemathesis.config.SchemathesisConfig.from_dict({"checks": CHECKS})
)


def test_the_fuzzed_spec_is_the_served_one(service: ServeProcess) -> None:
    assert httpx.get(f"{service.url}/openapi.json").json() == _spec()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_matches_the_spec_and_none_is_a_5xx(
    case: schemathesis.Case, service: ServeProcess, tmp_path: Path
) -> None:
    case.call_and_validate(
        base_url=service.url,
        headers={"X-API-Key": API_KEY},
        timeout=10,
    )
    assert service.running, service.log()


def _guarded(ctx: Any) -> bool:
    """An operation the API key guards (the app's own list, so a new write route is fuzzed
    without the key as soon as it is guarded)."""
    return (ctx.operation.method.upper(), ctx.operation.path) in GUARDED


@schema.include(_guarded).parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_guarded_routes_without_the_key_are_refused_in_the_documented_shape(
    case: schemathesis.Case, service: ServeProcess
) -> None:
    # The X-API-Key header as schemathesis generates it (absent or random): never the key, so
    # every guarded call is refused with 401 whatever its body (even one too large or not
    # JSON) or its path parameters.
    response = case.call_and_validate(base_url=service.url, timeout=10)
    # (The coverage phase also tries other methods on the path: those get 405, or reach an
    # unguarded route of the same path, such as GET /v1/items/{item_id}.)
    if (case.method.upper(), case.operation.path) in GUARDED:
        assert response.status_code == 401, response.text
    else:
        assert response.status_code != 401 and response.status_code < 500, response.text
