"""One master of a real 3-master Redis Cluster (AOF, appendfsync always) killed with SIGKILL
under a feedback load on a real ``veto serve``: writes for the other masters' users keep
succeeding, a batch spanning the dead master gets 503 saying how much was stored and its retry
after the restart counts those as duplicates, reads degrade for the dead master's users only,
and afterwards every acknowledged event is in the streams once and in its history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.feedback_load import (
    FeedbackLoad,
    assert_all_acked_stored,
    published_version,
    stream_event_ids,
)
from tests.processes import ServeProcess, eventually
from veto import keys
from veto.cli.redis_cluster import RedisCluster
from veto.cli.redis_server import RedisServer
from veto.connection import connect_url

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
PARTITIONS = 16


@dataclass
class Stack:
    cluster: RedisCluster
    serve: ServeProcess
    item_ids: list[str]

    def master_of(self, user: str) -> RedisServer:
        return self.cluster.node_of(keys.stream(keys.partition_of(user, PARTITIONS)))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Its own durable cluster, version 1 published, and ``veto serve`` ready on it."""
    cluster = RedisCluster(data_dir=tmp_path / "cluster", appendfsync="always").start()
    try:
        item_ids, env = published_version(
            tmp_path, cluster.url, seed=9, partitions=PARTITIONS, redis_timeout_seconds="0.5"
        )
        serve = ServeProcess(env=env, log_path=tmp_path / "serve.log").start()
        try:
            serve.wait_ready()
            yield Stack(cluster, serve, item_ids)
        finally:
            serve.stop()
    finally:
        cluster.stop()


def _post(url: str, events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/feedback", json={"events": events}, timeout=5)


def _like(event_id: str, user: str, item: str) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": item, "type": "like"}


def test_a_killed_master_fails_only_its_slots_and_loses_nothing(stack: Stack) -> None:
    url = stack.serve.url
    users = [f"user{i}" for i in range(40)]  # the load's users
    victim = stack.master_of("user0")
    down = [u for u in users if stack.master_of(u) is victim]
    up = [u for u in users if stack.master_of(u) is not victim]
    assert down and up
    load = FeedbackLoad(targets=lambda: [url], item_ids=stack.item_ids).start()
    try:
        eventually(lambda: load.acked_count() >= 150, timeout=30, what="acknowledged feedback")
        victim.stop(kill=True)  # SIGKILL mid-load
        acked_before = load.acked_count()

        item = stack.item_ids[0]
        live_write = _post(url, [_like("live-1", up[0], item)])
        spanning = [_like("span-up", up[1], item), _like("span-down", down[0], item)]
        partial = _post(url, spanning)
        read_up = httpx.get(f"{url}/v1/users/{up[0]}/recommendations?k=5", timeout=5)
        read_down = httpx.get(f"{url}/v1/users/{down[0]}/recommendations?k=5", timeout=5)
        time.sleep(0.5)  # the load keeps hitting the outage

        victim.start()  # same port, data dir and nodes.conf: it rejoins with its slots
        stack.cluster.wait_ok()

        retries: list[httpx.Response] = []

        def retried() -> bool:
            retries.append(_post(url, spanning))
            return retries[-1].status_code == 200

        eventually(retried, timeout=20, what="the spanning batch to be accepted", every=0.2)
        target = load.acked_count() + 100
        eventually(lambda: load.acked_count() >= target, timeout=30, what="feedback after")
    finally:
        load.stop()

    assert live_write.status_code == 200, live_write.text
    assert live_write.json()["accepted"] == 1
    assert partial.status_code == 503 and partial.headers["Retry-After"] == "1"
    assert partial.json()["error"]["code"] == "store_unavailable"
    assert "1 of 2 events are stored" in partial.json()["error"]["message"]
    # Retries before the master answered failed again on it (writing nothing more); the one
    # that went through finds the half stored at first.
    assert retries[-1].json() == {"accepted": 1, "duplicates": 1}
    assert read_up.status_code == 200 and read_up.json()["degraded"] is False
    assert read_down.status_code == 200 and read_down.json()["degraded"] is True
    assert len(read_down.json()["items"]) == 5
    assert set(load.statuses) <= {200, 503}, load.statuses  # nothing else, no 500
    assert load.statuses[503] > 0  # the load did meet the outage
    assert stack.serve.running, stack.serve.log()

    client = connect_url(stack.cluster.url)
    try:
        assert load.acked_count() > acked_before
        assert_all_acked_stored(client, load.acked, partitions=PARTITIONS)
        stored = stream_event_ids(client, PARTITIONS)
        assert stored["span-up"] == 1 and stored["span-down"] == 1 and stored["live-1"] == 1
    finally:
        client.close()
