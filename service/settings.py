"""Settings of the HTTP service process: built once in ``service.main`` and passed down."""

from __future__ import annotations

from pydantic import Field, SecretStr

from veto.settings import CommonSettings


class ServiceSettings(CommonSettings):
    """``VETO_*`` environment variables plus the service's own knobs; validated at start."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_k: int = Field(default=200, ge=1, le=10_000)
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Extra candidates fetched from FAISS on top of k + the user's filtered items.
    overfetch: int = Field(default=20, ge=0, le=10_000)
    dedupe_ttl_seconds: int = Field(default=7 * 86_400, ge=1)
    # The pointer is polled at least this often even when a pub/sub notice is lost.
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=1.0)
    popular_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    popular_days: int = Field(default=7, ge=1, le=90)
    retry_after_seconds: int = Field(default=1, ge=1, le=3600)
    # Searches comparing at least this many vectors (flat: N; IVF: centroids + probed
    # lists) run in a worker thread; smaller ones run inline, cheaper than the thread hop.
    offload_min_cost: int = Field(default=20_000, ge=0)
    # FAISS's own OpenMP threads per search: 1 keeps concurrent requests from fighting.
    faiss_threads: int = Field(default=1, ge=1, le=256)
    # When set, POST /v1/feedback needs it in the X-API-Key header.
    api_key: SecretStr | None = None
    # Share of accepted dislikes whose counterfactual responsiveness is measured, off the
    # request path, in a bounded queue (a full queue drops the sample, never the request).
    responsiveness_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    responsiveness_k: int = Field(default=20, ge=1, le=1000)
    responsiveness_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    # Timestamps further than this in the client's future are rejected.
    max_clock_skew_seconds: float = Field(default=86_400.0, ge=0)
