"""veto.cli.redis_server, veto.registry, veto.settings: the embedded Redis, the model pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from veto import keys, registry
from veto.cli.redis_server import RedisServer, find_binary, free_port
from veto.errors import ConfigError, NoModelVersion, StoreUnavailable
from veto.settings import CommonSettings


def test_find_binary_returns_an_executable() -> None:
    assert Path(find_binary()).is_file()


def test_restart_keeps_aof_data(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path / "r").start()
    try:
        port = server.port
        client = redis.Redis.from_url(server.url)
        client.rpush("k", "a", "b")
        client.close()
        server.stop()
        assert server.process is None
        server.start()
        assert server.port == port
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.lrange("k", 0, -1) == ["a", "b"]
        client.close()
        assert any(p.name.startswith("appendonly") for p in (tmp_path / "r").rglob("*"))
    finally:
        server.stop()


def test_sigkill_with_appendfsync_always_keeps_acknowledged_writes(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path / "r", appendfsync="always").start()
    try:
        client = redis.Redis.from_url(server.url)
        for i in range(50):
            client.set(f"k{i}", i)
        client.close()
        server.stop(kill=True)
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.dbsize() == 50
        client.close()
    finally:
        server.stop()


def test_password_is_required_when_set(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "r", password="s3cret") as server:
        assert ":s3cret@" in server.url
        anonymous = redis.Redis(port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert server.process is None


def test_start_on_a_busy_port_is_a_config_error(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "a") as first:
        second = RedisServer(data_dir=tmp_path / "b", port=first.port)
        with pytest.raises(ConfigError):
            second.start(timeout=2.0)
        assert second.process is None or second.process.poll() is not None


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536


def test_registry_publish_sets_pointer_and_notifies(redis_client: redis.Redis) -> None:
    with pytest.raises(NoModelVersion):
        registry.current(redis_client)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.MODEL_CHANNEL)
    assert pubsub.get_message(timeout=1.0) is not None  # the subscribe confirmation
    registry.publish(redis_client, 3)
    assert registry.current(redis_client) == 3
    message = pubsub.get_message(timeout=2.0)
    assert message is not None and message["data"] == "3"
    registry.publish(redis_client, 2)  # rollback
    assert registry.current(redis_client) == 2
    pubsub.close()


def test_registry_on_unreachable_redis_is_store_unavailable() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        registry.current(client)
    with pytest.raises(StoreUnavailable):
        registry.publish(client, 1)


def test_settings_read_env_and_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_STREAM_PARTITIONS", "4")
    monkeypatch.setenv("VETO_ARTIFACTS_DIR", "/tmp/somewhere")
    settings = CommonSettings()
    assert settings.stream_partitions == 4
    assert settings.artifacts_dir == Path("/tmp/somewhere")
    monkeypatch.setenv("VETO_STREAM_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        CommonSettings()
