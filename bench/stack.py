"""A seeded serving stack for the benchmarks: a real Redis (AOF, ``appendfsync always`` as
in the compose stack), a synthetic catalog of N items written as version 1 with users'
histories (bench/serve.py's seeding), and ``veto serve`` with an API key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from bench import procs
from bench.serve import seed_catalog
from trainer.online.index import build_index
from veto import registry
from veto.artifacts import Watermark, load_version, read_manifest, version_dir, write_version
from veto.cli.redis_server import RedisServer

API_KEY = "bench-key"


@dataclass
class Stack:
    """What a benchmark drives: the service, its Redis and its artifacts root."""

    service: procs.Child
    redis_url: str
    artifacts: Path
    logdir: Path
    env: dict[str, str]
    n_items: int
    n_users: int
    index: str
    seed_seconds: float

    def user_paths(self, count: int = 5000, *, seed: int = 0) -> tuple[str, ...]:
        """GET paths for random seeded users (the same shape as bench/serve.py)."""
        users = np.random.default_rng(seed).integers(self.n_users, size=count)
        return tuple(f"/v1/users/u{u}/recommendations?k=10" for u in users)

    def raw_vector_bytes(self) -> int:
        """N x D x 4: the item vectors as float32."""
        manifest = read_manifest(version_dir(self.artifacts, 1))
        return manifest.n_items * manifest.dim * 4


@contextmanager
def seeded_stack(
    workdir: Path, *, n_items: int, n_users: int, flat_max_items: int
) -> Iterator[Stack]:
    """Start Redis, seed the catalog and the histories, start the service; stop all after."""
    server = RedisServer(data_dir=workdir / "redis", appendfsync="always").start()
    service: procs.Child | None = None
    try:
        client = redis.Redis.from_url(server.url)
        t0 = time.perf_counter()
        index = seed_catalog(
            workdir / "artifacts",
            client,
            n_items=n_items,
            n_users=n_users,
            flat_max=flat_max_items,
        )
        seed_seconds = time.perf_counter() - t0
        client.close()
        env = procs.veto_env(redis_url=server.url, artifacts=workdir / "artifacts", api_key=API_KEY)
        logdir = workdir / "logs"
        service = procs.serve(env=env, logdir=logdir)
        yield Stack(
            service=service,
            redis_url=server.url,
            artifacts=workdir / "artifacts",
            logdir=logdir,
            env=env,
            n_items=n_items,
            n_users=n_users,
            index=index,
            seed_seconds=round(seed_seconds, 1),
        )
    finally:
        if service is not None:
            service.stop()
        server.stop()


def write_next_version(artifacts: Path, *, parent: int, flat_max_items: int, seed: int) -> int:
    """Write version ``parent + 1``: the parent's catalog with perturbed item vectors (a
    retrained model as the service sees it). Returns the new version number."""
    old = load_version(version_dir(artifacts, parent))
    rng = np.random.default_rng(seed)
    vectors = np.asarray(old.vectors, dtype=np.float32)  # (N, D)
    vectors = vectors + 0.05 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_version(
        artifacts,
        version=parent + 1,
        parent=parent,
        item_ids=old.item_ids.tolist(),
        categories=old.categories.tolist(),
        vectors=vectors,
        encoder=old.encoder,
        popular=old.popular,
        loss={"objective": "bench-swap"},
        watermark=Watermark(),
        index=build_index(vectors, flat_max_items=flat_max_items, nprobe=old.manifest.nprobe or 64),
    )
    return parent + 1


def publish(redis_url: str, version: int) -> None:
    """Point the service at ``version`` (SET pointer + PUBLISH notice)."""
    client = redis.Redis.from_url(redis_url)
    try:
        registry.publish(client, version)
    finally:
        client.close()
