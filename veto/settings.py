"""Settings both processes share. Each process has one settings class built on this one
(``service.settings``, ``trainer.settings``), built at its entry point and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Read from ``VETO_*`` environment variables; validated at start."""

    model_config = SettingsConfigDict(env_prefix="VETO_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    artifacts_dir: Path = Path("var/artifacts")
    # Fixed for the life of a deployment: it decides which stream a user's events go to.
    stream_partitions: int = Field(default=8, ge=1, le=1024)
    # Events kept per user in Redis; the encoder reads the newest history_len of them.
    history_len: int = Field(default=50, ge=1, le=1000)
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
