"""Redis (AOF, appendfsync always) killed with SIGKILL under a feedback load on a real ``veto
serve``: during the outage writes get 503 with Retry-After and reads answer degraded; Redis is
restarted on the same port and data dir, the service recovers by itself within 2 s of Redis
answering PING, and every acknowledged event is in the streams (once) and in its history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.feedback_load import FeedbackLoad, assert_all_acked_stored, durable_setup
from tests.processes import ServeProcess, eventually
from veto.cli.redis_server import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
PARTITIONS = 8
RECOVERY_BOUND_SECONDS = 2.0


@dataclass
class Stack:
    redis: RedisServer
    serve: ServeProcess
    item_ids: list[str]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Its own durable Redis, version 1 published, and ``veto serve`` ready on it."""
    setup = durable_setup(tmp_path, seed=5, partitions=PARTITIONS, redis_timeout_seconds="0.5")
    server, env = setup.server, setup.env
    serve = ServeProcess(env=env, log_path=tmp_path / "serve.log").start()
    try:
        serve.wait_ready()
        yield Stack(server, serve, setup.item_ids)
    finally:
        serve.stop()
        server.stop()


def _post_one(url: str, event_id: str) -> httpx.Response:
    body = {"events": [{"event_id": event_id, "user_id": "probe", "item_id": "i1", "type": "like"}]}
    return httpx.post(f"{url}/v1/feedback", json=body, timeout=2)


def test_acknowledged_feedback_survives_a_redis_crash_and_the_service_recovers(
    stack: Stack,
) -> None:
    url = stack.serve.url
    load = FeedbackLoad(targets=lambda: [url], item_ids=stack.item_ids).start()
    try:
        eventually(lambda: load.acked_count() >= 150, timeout=30, what="acknowledged feedback")
        stack.redis.stop(kill=True)  # SIGKILL mid-load
        acked_before = load.acked_count()

        # The outage: writes fail fast with 503 + Retry-After, reads answer degraded.
        write = _post_one(url, "during-outage")
        read = httpx.get(f"{url}/v1/users/user1/recommendations?k=5", timeout=2)
        ready = httpx.get(f"{url}/readyz", timeout=2)
        time.sleep(0.3)  # the load keeps hitting the outage

        stack.redis.start()  # same port and data dir; returns once PING answers
        answered = time.monotonic()

        def recovered() -> bool:
            try:
                ok_ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
                return ok_ready and _post_one(url, f"after-{time.monotonic()}").status_code == 200
            except httpx.HTTPError:
                return False

        eventually(recovered, timeout=10, what="the service to recover", every=0.02)
        recovery = time.monotonic() - answered
        # Keep loading after the recovery, then let the in-flight batch finish.
        target = load.acked_count() + 100
        eventually(lambda: load.acked_count() >= target, timeout=30, what="feedback after")
    finally:
        load.stop()

    assert write.status_code == 503 and write.headers["Retry-After"] == "1"
    assert write.json()["error"]["code"] == "store_unavailable"
    assert read.status_code == 200 and read.json()["degraded"] is True
    assert len(read.json()["items"]) == 5
    assert ready.status_code == 503
    assert load.statuses[503] > 0 and load.retry_after == {"1"}
    assert set(load.statuses) <= {200, 503}, load.statuses  # nothing else, no 500
    assert recovery <= RECOVERY_BOUND_SECONDS, f"recovered {recovery:.2f} s after PING"
    assert stack.serve.running, stack.serve.log()

    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        assert load.acked_count() > acked_before
        assert_all_acked_stored(client, load.acked, partitions=PARTITIONS)
        assert client.config_get("appendfsync")["appendfsync"] == "always"
    finally:
        client.close()
