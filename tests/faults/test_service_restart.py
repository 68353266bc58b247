"""Two ``veto serve`` replicas on one Redis; a client sends feedback to replica A and fails
over to B on connection errors, retrying the same batch (same event ids). A is stopped
(SIGTERM) and restarted, then crashed (SIGKILL) and restarted, mid-load: every acknowledged
event is stored exactly once (idempotency by event id) and no request failed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.feedback_load import FeedbackLoad, assert_all_acked_stored, durable_setup
from tests.processes import ServeProcess, eventually
from veto.cli.redis_server import RedisServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]
PARTITIONS = 8
API_KEY = "replica-key"


@dataclass
class Replicas:
    redis: RedisServer
    a: ServeProcess
    b: ServeProcess
    item_ids: list[str]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    setup = durable_setup(tmp_path, seed=7, partitions=PARTITIONS, api_key=API_KEY)
    server, env = setup.server, setup.env
    a = ServeProcess(env=env, log_path=tmp_path / "a.log").start()
    b = ServeProcess(env=env, log_path=tmp_path / "b.log").start()
    try:
        a.wait_ready()
        b.wait_ready()
        yield Replicas(server, a, b, setup.item_ids)
    finally:
        a.stop()
        b.stop()
        server.stop()


def test_no_acknowledged_event_is_lost_or_doubled_when_a_replica_restarts(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    load = FeedbackLoad(
        targets=lambda: [a.url, b.url], item_ids=replicas.item_ids, api_key=API_KEY
    ).start()

    def more(n: int) -> None:
        target = load.acked_count() + n
        eventually(lambda: load.acked_count() >= target, timeout=30, what=f"{n} more acks")

    try:
        more(150)
        assert a.stop() in (0, -15), a.log()  # graceful: SIGTERM
        more(100)  # all on B now
        failovers_after_term = load.failovers
        a.start().wait_ready()
        more(150)
        a.kill()  # a crash: batches in flight on A are retried on B
        more(100)
        a.start().wait_ready()
        more(150)
    finally:
        load.stop()

    # A retry of a batch another replica already stored (what a client does when the answer
    # was lost in a crash) is recognised on either replica.
    replay = {"events": [e.body() for e in load.acked[:5]]}
    again = [
        httpx.post(f"{r.url}/v1/feedback", json=replay, headers={"X-API-Key": API_KEY})
        for r in (a, b)
    ]
    assert [r.json() for r in again] == [{"accepted": 0, "duplicates": 5}] * 2
    assert failovers_after_term > 0, "the load never failed over to B"
    assert set(load.statuses) == {200}, load.statuses  # no request failed, none was refused
    assert b.running, b.log()
    client = redis.Redis.from_url(replicas.redis.url, decode_responses=True)
    try:
        assert_all_acked_stored(client, load.acked, partitions=PARTITIONS)
    finally:
        client.close()
