"""The deployment's configuration: every ``VETO_*`` environment variable, in one place.

    CommonSettings       what both processes read (Redis, artifacts, partitions, history)
    ├── ServiceSettings  ``veto serve``
    └── TrainerSettings  ``veto bootstrap`` and ``veto train``

Each process builds one object at its entry point with ``load_settings`` (command-line flags
are passed in as overrides) and passes it down; nothing else reads the environment. A
``VETO_*`` variable that no class here defines is refused at start, naming it: a typo would
otherwise be silently ignored. The refusal uses every class's fields, not only the process's
own, so one environment (a compose file, ``veto up``) can configure both processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from veto.errors import ConfigError
from veto.redis_url import cluster_address

PREFIX = "VETO_"


class CommonSettings(BaseSettings):
    """Read from ``VETO_*`` environment variables; validated at start."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid")

    # One Redis (redis://, rediss://) or a Redis Cluster (redis+cluster://host:port,...):
    # veto.redis_url.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Socket timeout of the service's Redis calls (the trainer waits at least 5 s).
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    artifacts_dir: Path = Path("var/artifacts")
    # Fixed for the life of a deployment: it decides which stream, and so which Redis Cluster
    # slot, a user's keys go to (veto.partitions refuses a process with another count). 64
    # spreads users over the masters of a cluster of up to ~20 (README, "Redis Cluster").
    stream_partitions: int = Field(default=64, ge=1, le=1024)
    # Events kept per user in Redis; the encoder reads the newest history_len of them.
    # 100: on ML-100K's validation slices 50 lost 4-15 % of Recall@20 and 200 gained nothing.
    history_len: int = Field(default=100, ge=1, le=1000)

    @field_validator("redis_url")
    @classmethod
    def _cluster_url_parses(cls, url: str) -> str:
        try:
            cluster_address(url)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return url


class ServiceSettings(CommonSettings):
    """The HTTP service's knobs."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_k: int = Field(default=200, ge=1, le=10_000)
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    # Items in one POST /v1/items:batch: one Lua transaction, which blocks Redis while it runs.
    catalog_max_batch: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Extra candidates fetched from FAISS on top of k + the user's filtered items: the
    # serving-time adjustment (veto.ranking) can only reorder what was fetched.
    overfetch: int = Field(default=20, ge=0, le=10_000)
    # veto.ranking's strengths: the item prior log((likes+1)/(dislikes+1)) and the penalty
    # for closeness to the user's newest penalty_window dislikes (0 = all); 0 turns a mechanism
    # off. Chosen on the validation slices of ML-100K and ML-1M (ssm+ntr, bag): the largest
    # pair whose Recall@20 stays within 3 % of both off on both. Prior 0.05 cost 4.6 % / 6.2 %;
    # 0.03 + penalty 0.1 cost 2.9 % / 3.9 %; 0.03 + 0.05 cost < 3 % on both (README).
    prior_weight: float = Field(default=0.03, ge=0.0, le=10.0)
    dislike_penalty: float = Field(default=0.05, ge=0.0, le=10.0)
    # Windows 1-10 differ by < 1 % of Recall@20 on ML-1M; 3 keeps a short memory of dislikes.
    penalty_window: int = Field(default=3, ge=0, le=1000)
    dedupe_ttl_seconds: int = Field(default=7 * 86_400, ge=1)
    # The pointer is polled at least this often even when a pub/sub notice is lost.
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=1.0)
    popular_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    popular_days: int = Field(default=7, ge=1, le=90)
    retry_after_seconds: int = Field(default=1, ge=1, le=3600)
    # A batch whose searches compare at least this many vectors in all (flat: N per user; IVF:
    # centroids + probed lists; a category: its rows) runs in a worker thread; a smaller one
    # runs inline, cheaper than the thread hop.
    offload_min_cost: int = Field(default=20_000, ge=0)
    # Concurrent recommendation requests are served in batches of at most this many: one
    # Redis round trip, one encode and one index search per batch. 1 serves each alone.
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    # How long a batch may wait for more requests after its first one arrived. 0: never; a
    # batch starts as soon as the previous one is done, and requests queue behind it meanwhile.
    batch_max_wait_seconds: float = Field(default=0.0, ge=0, le=1.0)
    # FAISS's own OpenMP threads per search: 1 keeps concurrent requests from fighting.
    faiss_threads: int = Field(default=1, ge=1, le=256)
    # When set, POST /v1/feedback and the catalog writes need it in the X-API-Key header.
    api_key: SecretStr | None = None
    # Share of accepted dislikes whose counterfactual responsiveness is measured, off the
    # request path, in a bounded queue (a full queue drops the sample, never the request).
    responsiveness_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    responsiveness_k: int = Field(default=20, ge=1, le=1000)
    responsiveness_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    # Timestamps further than this in the client's future are rejected.
    max_clock_skew_seconds: float = Field(default=86_400.0, ge=0)
    # GET /v1/admin/live (the console's "Responsiveness now"): the service's own metrics
    # sampled every live_interval_seconds, the last live_window_seconds of them kept.
    live_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    live_window_seconds: float = Field(default=900.0, gt=0, le=86_400)


class TrainerSettings(CommonSettings):
    """Model size, round policy and publishing, for ``veto bootstrap`` and ``veto train``."""

    dim: int = Field(default=64, ge=2, le=1024)
    objective: str = "ssm+ntr"
    # The input of a training example: the history before the event (causal), the whole
    # history but the event (bag: how the service encodes a user), or half each (mix).
    # bag: the smallest worst-case loss over ML-100K and ML-1M, random and temporal
    # validation slices (README, "The model and the losses").
    context: Literal["causal", "bag", "mix"] = "bag"
    # A live round's context: causal, the history the service encoded when it served the
    # event. A bag there also reads the events after it: on the demo (tests/test_demo.py) a
    # user's later dislikes of a category then become the context of their earlier likes of
    # it, and the next version brings the disliked category back (30 % of the top 20 after,
    # against 50 % before the dislikes); causal and mix keep it down.
    round_context: Literal["causal", "bag", "mix"] = "causal"
    bootstrap_epochs: int = Field(default=5, ge=0, le=1000)
    # Fine-tuning per round: passes over (new events + replay sample).
    finetune_epochs: int = Field(default=2, ge=1, le=100)
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    max_events: int = Field(default=5_000, ge=1, le=1_000_000)  # a round starts at this many
    replay_ratio: float = Field(default=4.0, ge=0, le=100)  # replay examples per new example
    replay_capacity: int = Field(default=20_000, ge=0, le=10_000_000)  # kept in the checkpoint
    keep_versions: int = Field(default=5, ge=2, le=1000)
    flat_max_items: int = Field(default=200_000, ge=1)  # larger catalogs get an IVF index
    # IVF lists searched per query (of ~4·sqrt(N)). 64: recall@10 of the served search
    # against exact search 0.98 at 1M items in the memory benchmark, where 32 gave 0.83.
    nprobe: int = Field(default=64, ge=1, le=65536)
    # What an IVF index's lists hold: sq8 = 8-bit codes (a quarter of the float vectors), the
    # service re-scoring the candidates exactly with the vectors it maps anyway; flat = a
    # float32 copy of every vector (IndexIVFFlat, the older versions' index), 4x the index
    # memory. Recall@10 of both against exact search: README "Benchmarks".
    ivf_encoding: Literal["sq8", "flat"] = "sq8"
    # An IVF index is updated row by row between rounds under the coarse quantizer it was
    # trained with. Its recall@10 is measured on sampled items every round; below this share
    # of the recall it had when trained, the next version gets a newly trained index.
    ivf_min_recall_ratio: float = Field(default=0.95, ge=0.0, le=2.0)
    popular_size: int = Field(default=500, ge=1, le=100_000)
    consumer_name: str = "trainer-1"
    # Pending entries of another (dead) consumer older than this are claimed.
    claim_idle_ms: int = Field(default=60_000, ge=0)
    # The trainer's /metrics port; 0 = none.
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    threads: int = Field(default=2, ge=1, le=256)
    # Data-parallel training (veto train --nproc N, or torchrun): how long a training
    # collective waits for the slowest rank before the group is declared lost (a hung rank;
    # a dead one is noticed at once).
    dist_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)


SETTINGS_CLASSES: tuple[type[CommonSettings], ...] = (ServiceSettings, TrainerSettings)
S = TypeVar("S", bound=CommonSettings)


def known_variables() -> frozenset[str]:
    """Every ``VETO_*`` name some process reads."""
    return frozenset(PREFIX + name.upper() for c in SETTINGS_CLASSES for name in c.model_fields)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``VETO_*`` names in ``environ`` that no process reads, sorted."""
    known = known_variables()
    return sorted(k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known)


def load_settings(cls: type[S], *, environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """``cls`` from the environment, with the non-None ``overrides`` (command-line flags) on
    top. Raises ConfigError naming every unknown variable or invalid value."""
    env = os.environ if environ is None else environ
    unknown = unknown_variables(env)
    if unknown:
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known_variables()))})"
        )
    own = {PREFIX + name.upper() for name in cls.model_fields}
    # pydantic-settings reads os.environ itself; variables of the other process are valid
    # but not fields of ``cls``, so only this class's own are passed on.
    values: dict[str, Any] = {
        name: env[var]
        for name in cls.model_fields
        if (var := PREFIX + name.upper()) in own and var in env
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
