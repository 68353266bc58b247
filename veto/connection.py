"""The synchronous Redis client of the command-line processes (trainer, bootstrap, versions)."""

from __future__ import annotations

import redis

from veto.settings import CommonSettings

# Trainer calls read whole histories and streams: a serving-size timeout would cut them off.
MIN_TIMEOUT_SECONDS = 5.0


def connect(settings: CommonSettings) -> redis.Redis:
    """A client of ``settings.redis_url`` (str replies), not yet connected."""
    timeout = max(settings.redis_timeout_seconds, MIN_TIMEOUT_SECONDS)
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
