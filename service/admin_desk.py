"""The admin API's logic: what this replica serves, the versions on disk, and publishing one
(rollback or forward) by the rule ``veto versions publish`` applies (``veto.versions``).

Every publish, done or refused, is one line on the ``veto.audit`` logger, at WARNING so a
quieter log level keeps it: who asked (the client address), which version, the pointer
before, and the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from service.errors import VersionRefused
from service.model_holder import ModelHolder
from service.reloader import Reloader
from service.schemas import ModelStatus, Published, ServedModel, VersionInfo, Versions
from veto import registry
from veto.connection import AsyncClient
from veto.errors import ArtifactError, StoreUnavailable, UnknownVersion
from veto.versions import check_publishable, version_rows

audit = logging.getLogger("veto.audit")


class AdminDesk:
    """Reports the served model and the versions; publishes a version."""

    def __init__(
        self,
        holder: ModelHolder,
        client: AsyncClient,
        reloader: Reloader,
        *,
        artifacts_dir: Path,
    ) -> None:
        self._holder = holder
        self._client = client
        self._reloader = reloader
        self._root = artifacts_dir

    async def _pointer(self) -> tuple[int | None, bool]:
        """The published version and whether Redis answered."""
        try:
            return await self._reloader.pointer(), True
        except StoreUnavailable:
            return None, False

    def _served(self) -> ServedModel | None:
        model = self._holder.current
        if model is None:
            return None
        m = model.version.manifest
        swapped = self._reloader.swapped_at
        ingest = m.watermark.ingest_time
        lag = None if swapped is None or ingest is None else max(0.0, swapped - ingest)
        return ServedModel(
            version=m.version,
            parent=m.parent,
            created_at=m.created_at,
            n_items=m.n_items,
            dim=m.dim,
            index_type=m.index_type,
            watermark_ingest_time=ingest,
            swapped_at=swapped,
            feedback_to_model_lag_seconds=lag,
        )

    async def status(self) -> ModelStatus:
        """The served model (None while starting), the pointer, whether Redis answers."""
        published, redis_ok = await self._pointer()
        return ModelStatus(
            served=self._served(), published=published, redis="ok" if redis_ok else "unavailable"
        )

    async def versions(self) -> Versions:
        """The versions on disk, oldest first (the pointer unknown while Redis is down)."""
        published, _ = await self._pointer()
        rows = await asyncio.to_thread(version_rows, self._root, published)
        model = self._holder.current
        served = None if model is None else model.number
        return Versions(
            versions=[
                VersionInfo(
                    version=r.version,
                    parent=r.parent,
                    created_at=r.created_at,
                    n_items=r.n_items,
                    index_type=r.index_type,
                    watermark_ingest_time=r.watermark_ingest_time,
                    published=r.current,
                    served=r.version == served,
                    error=r.error,
                )
                for r in rows
            ],
            published=published,
        )

    async def publish(self, version: int, *, by: str) -> Published:
        """Validate ``version`` (off the event loop), point at it, and swap this replica to it
        (the others follow the notice). UnknownVersion / VersionRefused and nothing written
        when the rule refuses it; StoreUnavailable when Redis is down."""
        try:
            await asyncio.to_thread(check_publishable, self._root, version)
        except UnknownVersion as exc:
            audit.warning("publish version=%d by=%s refused: %s", version, by, exc.message)
            # The same error without the artifacts path: a client need not know the disk.
            known = ", ".join(map(str, exc.details["versions"])) or "none"
            raise UnknownVersion(
                f"no version {version} on disk (versions: {known})", details=exc.details
            ) from exc
        except ArtifactError as exc:
            audit.warning("publish version=%d by=%s refused: %s", version, by, exc.message)
            raise VersionRefused(exc.message, details={"version": version}) from exc
        try:
            previous = await self._reloader.pointer()
            await registry.publish_async(self._client, version)
        except StoreUnavailable as exc:
            audit.warning("publish version=%d by=%s failed: %s", version, by, exc.message)
            raise
        audit.warning("publish version=%d by=%s done (pointer was %s)", version, by, previous)
        # Published; if Redis drops now, the watcher swaps once it answers again.
        with contextlib.suppress(StoreUnavailable):
            await self._reloader.check()
        model = self._holder.current
        return Published(
            published=version, previous=previous, served=None if model is None else model.number
        )
