"""Follows the model-version pointer and hot-swaps versions.

Invariants (with ``service.model_holder``): a version is loaded and validated off the event
loop, on one dedicated loader thread, and swapped in as one reference; a version that fails
to load is refused, logged and counted, and not retried until the pointer moves to another
version; publishing an older version swaps back to it (rollback). Pub/sub gives prompt
notice, polling every ``poll_interval`` covers lost notices and Redis restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import time
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, ServingModel, build_serving_model
from veto import keys
from veto.artifacts import load_version, version_dir
from veto.connection import AsyncClient
from veto.errors import ArtifactError, StoreUnavailable

log = logging.getLogger(__name__)


def load_serving_model(
    root: Path, version: int, previous: ServingModel | None = None
) -> ServingModel:
    """Load, validate and index one version (blocking: run it in a thread). What the new
    version shares byte for byte with ``previous`` is reused rather than rebuilt."""
    loaded = load_version(
        version_dir(root, version), previous=None if previous is None else previous.version
    )
    return build_serving_model(loaded, previous=previous)


class Reloader:
    """Keeps ``holder`` on the version the pointer names."""

    def __init__(
        self,
        client: AsyncClient,
        holder: ModelHolder,
        *,
        artifacts_dir: Path,
        metrics: ServiceMetrics,
        poll_interval: float,
    ) -> None:
        self._client = client
        self._holder = holder
        self._root = artifacts_dir
        self._metrics = metrics
        self._interval = poll_interval
        self._refused: int | None = None
        # Wall-clock time of the last swap: when the served version reached this replica.
        self.swapped_at: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Every load on the same thread: glibc gives each thread its own malloc arena, and a
        # version freed in one arena is only reused by loads on that thread. Spread over the
        # default executor's threads, each arena kept a dead version (soak RSS +28 %).
        self._loader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="veto-model-loader"
        )

    async def pointer(self) -> int | None:
        """The published version, None when none is; StoreUnavailable when Redis is down."""
        try:
            raw = await self._client.get(keys.MODEL_POINTER)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the model pointer: {exc}") from exc
        return None if raw is None else int(raw)

    async def check(self) -> bool:
        """Swap to the published version if it differs from the served one; True on a swap."""
        async with self._lock:  # pub/sub and polling may fire together
            wanted = await self.pointer()
            served = self._holder.current
            if wanted is None or wanted == self._refused:
                return False
            if served is not None and served.number == wanted:
                self._refused = None
                return False
            return await self._swap(wanted, served)

    async def _swap(self, wanted: int, served: ServingModel | None) -> bool:
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            model = await loop.run_in_executor(
                self._loader, load_serving_model, self._root, wanted, served
            )
        except ArtifactError as exc:
            self._refused = wanted
            self._metrics.model_swap_failures.inc()
            log.error(
                "refused model version %d, still serving %s: %s",
                wanted,
                served.number if served else None,
                exc,
            )
            return False
        self._holder.swap(model)
        self.swapped_at = time.time()
        # The version's id lists and dicts are long-lived: keep the cyclic GC from walking
        # their ~N objects in every full collection (reference counting still frees them).
        gc.freeze()
        self._refused = None
        self._metrics.model_swap_duration.observe(time.perf_counter() - started)
        self._metrics.model_version.set(model.number)
        ingest = model.version.manifest.watermark.ingest_time
        # A rollback or the first load at start-up is not a model catching up with feedback.
        if served is not None and model.number > served.number and ingest is not None:
            self._metrics.feedback_to_model_lag.observe(max(0.0, self.swapped_at - ingest))
        log.info(
            "serving model version %d (was %s)", model.number, served.number if served else None
        )
        return True

    async def _run(self) -> None:
        # The pointer is checked every turn, the notice only shortens the wait: on a cluster
        # the channel's node can be down while the pointer's is not.
        pubsub: Any = None  # PubSub, or ClusterPubSub on a cluster
        try:
            while not self._stopping:
                try:
                    await self.check()
                except (RedisError, StoreUnavailable, OSError) as exc:
                    log.debug("model pointer check failed: %s", exc)
                except Exception:  # the watcher must not die: it would pin the old version
                    log.exception("model reloader error")
                try:
                    if pubsub is None:
                        pubsub = self._client.pubsub()
                        await pubsub.subscribe(keys.MODEL_CHANNEL)
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._interval)
                except (RedisError, OSError) as exc:
                    log.debug("model notice watch interrupted: %s", exc)
                    await _close(pubsub)
                    pubsub = None
                    await asyncio.sleep(self._interval)
        finally:
            await _close(pubsub)

    def start(self) -> None:
        """Start watching in the background."""
        self._task = asyncio.create_task(self._run(), name="veto-model-reloader")

    async def stop(self) -> None:
        """Stop watching. The flag ends the loop even if a cancellation is swallowed by a
        Redis read timing out at the same moment (redis-py turns it into a timeout)."""
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self._interval)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("model reloader ended with %r", task.exception())
        self._loader.shutdown(wait=False, cancel_futures=True)


async def _close(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
