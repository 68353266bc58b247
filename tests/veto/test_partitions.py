"""The partition count is recorded by the first process and refused when another differs, on
one Redis and on a cluster; a Redis from before the record gets the count its trainer used."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import BOTH
from veto import keys, partitions
from veto.connection import Client
from veto.errors import ConfigError

pytestmark = pytest.mark.parametrize("redis_backend", BOTH, indirect=True)


def test_the_first_process_records_its_count_and_another_count_is_refused(
    redis_client: Client,
) -> None:
    partitions.check(redis_client, 16)
    assert redis_client.get(keys.PARTITIONS) == "16"
    partitions.check(redis_client, 16)  # the same count: fine, nothing rewritten
    with pytest.raises(ConfigError, match="VETO_STREAM_PARTITIONS=16"):
        partitions.check(redis_client, 64)
    assert redis_client.get(keys.PARTITIONS) == "16"


def test_a_redis_from_before_the_record_gets_its_trainers_count(redis_client: Client) -> None:
    for p in range(8):  # what a trainer with 8 partitions left behind
        redis_client.xgroup_create(keys.stream(p), keys.CONSUMER_GROUP, id="0", mkstream=True)
    redis_client.xadd(keys.stream(20), {"a": "1"})  # a stream without the group: not counted
    with pytest.raises(ConfigError, match="set up with 8 partitions"):
        partitions.check(redis_client, 64)
    assert redis_client.get(keys.PARTITIONS) == "8"


def test_the_service_check_agrees(redis_url: str, redis_client: Client) -> None:
    from service.feedback_store import connect

    async def run() -> None:
        client = connect(redis_url, timeout=1.0)
        try:
            await partitions.check_async(client, 4)
            with pytest.raises(ConfigError):
                await partitions.check_async(client, 5)
        finally:
            await client.aclose()

    asyncio.run(run())
    assert redis_client.get(keys.PARTITIONS) == "4"
