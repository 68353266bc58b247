"""The trainer's settings: ``VETO_*`` environment variables on top of the shared ones."""

from __future__ import annotations

from pydantic import Field

from veto.settings import CommonSettings


class TrainerSettings(CommonSettings):
    """Model size, round policy and publishing, for ``veto bootstrap`` and ``veto train``."""

    dim: int = Field(default=64, ge=2, le=1024)
    objective: str = "ssm+ntr"
    bootstrap_epochs: int = Field(default=5, ge=0, le=1000)
    # Fine-tuning per round: passes over (new events + replay sample).
    finetune_epochs: int = Field(default=2, ge=1, le=100)
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    max_events: int = Field(default=5_000, ge=1, le=1_000_000)  # a round starts at this many
    replay_ratio: float = Field(default=4.0, ge=0, le=100)  # replay examples per new example
    replay_capacity: int = Field(default=20_000, ge=0, le=10_000_000)  # kept in the checkpoint
    keep_versions: int = Field(default=5, ge=2, le=1000)
    flat_max_items: int = Field(default=200_000, ge=1)  # larger catalogs get an IVF index
    nprobe: int = Field(default=32, ge=1, le=65536)
    # An IVF index is updated row by row between rounds under the coarse quantizer it was
    # trained with. Its recall@10 is measured on sampled items every round; below this share
    # of the recall it had when trained, the next version gets a newly trained index.
    ivf_min_recall_ratio: float = Field(default=0.95, ge=0.0, le=2.0)
    popular_size: int = Field(default=500, ge=1, le=100_000)
    consumer_name: str = "trainer-1"
    # Pending entries of another (dead) consumer older than this are claimed.
    claim_idle_ms: int = Field(default=60_000, ge=0)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    threads: int = Field(default=2, ge=1, le=256)
