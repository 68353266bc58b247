"""Small real model versions for tests: a seeded synthetic world written with write_version."""

from __future__ import annotations

from pathlib import Path

from trainer.data.synthetic import SyntheticWorld, make_world
from trainer.online.index import build_index
from veto.artifacts import Watermark, write_version
from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES

DIM = 16
HISTORY_LEN = 8


def small_world(*, n_items: int = 200, seed: int = 0) -> SyntheticWorld:
    """A tiny seeded catalog (n_items, DIM) with a few users."""
    return make_world(
        n_items=n_items, n_users=10, n_categories=8, dim=DIM, events_per_user=5, seed=seed
    )


def write_demo_version(
    root: Path,
    version: int,
    *,
    world: SyntheticWorld | None = None,
    parent: int | None = None,
    flat_max_items: int = 200_000,
    ingest_time: float | None = None,
) -> Path:
    """Write version ``version`` of a small synthetic catalog under ``root``."""
    world = world or small_world()
    encoder = UserEncoder.initial(dim=DIM, history_len=HISTORY_LEN, n_types=N_EVENT_TYPES)
    return write_version(
        root,
        version=version,
        parent=parent,
        item_ids=world.item_ids,
        categories=world.categories,
        vectors=world.item_vectors,
        encoder=encoder,
        popular=world.item_ids[:5],
        loss={"objective": "ssm+ntr"},
        watermark=Watermark(
            ingest_time=ingest_time, stream_ids={"0": "1-0"} if ingest_time else {}
        ),
        index=build_index(world.item_vectors, flat_max_items=flat_max_items, nprobe=4),
    )
