"""Model versions as an operator sees them, and the one rule for making one current, shared
by ``veto versions publish`` and the service's ``POST /v1/admin/publish``:

    a version may be published when its directory exists (else UnknownVersion) and it loads
    as the service would load it, every serving file matching its manifest's sha256 and the
    manifest naming that version (else ArtifactError); nothing is published otherwise.

Rollback is publishing an older version by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veto.artifacts import Manifest, list_versions, load_version, read_manifest, version_dir
from veto.errors import ArtifactError, UnknownVersion


@dataclass(frozen=True)
class VersionRow:
    """One version on disk; ``error`` is set (and the rest None) when its manifest is
    unreadable."""

    version: int
    created_at: float | None
    n_items: int | None
    index_type: str | None
    watermark_ingest_time: float | None
    current: bool
    parent: int | None = None
    error: str | None = None


def version_rows(root: Path, current: int | None) -> list[VersionRow]:
    """The versions under ``root``, oldest first, with ``current`` marked (reads each
    manifest: blocking)."""
    rows = []
    for v in list_versions(root):
        try:
            m = read_manifest(version_dir(root, v))
        except ArtifactError as exc:
            rows.append(VersionRow(v, None, None, None, None, v == current, error=exc.message))
            continue
        rows.append(
            VersionRow(
                version=v,
                created_at=m.created_at,
                n_items=m.n_items,
                index_type=m.index_type,
                watermark_ingest_time=m.watermark.ingest_time,
                current=v == current,
                parent=m.parent,
            )
        )
    return rows


def check_publishable(root: Path, version: int) -> Manifest:
    """Validate ``version`` as the service would load it (blocking: sha256 of every serving
    file); its manifest when it may be published. UnknownVersion when there is no such
    directory, ArtifactError when it fails validation."""
    path = version_dir(root, version)
    if not path.is_dir():
        versions = list_versions(root)
        known = ", ".join(str(v) for v in versions) or "none"
        raise UnknownVersion(
            f"no version {version} under {root} (versions: {known})",
            details={"version": version, "versions": versions},
        )
    loaded = load_version(path)
    if loaded.version != version:
        raise ArtifactError(f"{path}: manifest says version {loaded.version}, not {version}")
    return loaded.manifest
