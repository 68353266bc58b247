"""Model versions on disk: the contract between the trainer (writes) and the service (reads).

One directory per version under the artifacts root, ``v00000042/``:

    manifest.json         Manifest below; sha256 of every other file
    item_ids.json         ["id", ...]             row i of every item array is item_ids[i]
    item_categories.json  ["cat" | null, ...]     for the category filter and responsiveness
    item_vectors.npy      float32 (N, D), unit rows, np.load(mmap_mode="r")
    index.faiss           inner-product index over item_vectors: flat, or IVF above a size
                          (IVF lists of 8-bit codes, or float32 in versions written before);
                          a flat one is not loaded for serving: the vectors are searched
    encoder.npz           veto.encoder.UserEncoder arrays
    user_ids.json         ids of the rows of the encoder's user_emb
    popular.json          item ids, most liked first: the fallback for unknown users
    item_prior.npy        float32 (N,) log((likes + 1) / (dislikes + 1)), see veto.ranking
                          (optional: a version without it serves with an all-zero prior)
    cold_items.json       [row, ...] ascending: the rows that still carry an untrained cold-start
                          vector (trainer.online.cold_start); GET /v1/items/{id} answers
                          "learned": false for them (optional: a version without it, one
                          written before it existed, has every row learned)
    checkpoint.pt         the trainer's checkpoint (optional; only the trainer reads it)

A version is written under a temporary name in the same root and renamed into place, so a
reader sees either no directory or a complete one. It is immutable afterwards. Making it
current is a separate step (``veto.registry``); the service refuses a version whose files do
not match the manifest, and keeps serving the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from veto.catalog import Categories, ItemIds
from veto.encoder import UserEncoder
from veto.errors import ArtifactError
from veto.search import nearest

FORMAT = 1
MANIFEST = "manifest.json"
ITEM_IDS = "item_ids.json"
ITEM_CATEGORIES = "item_categories.json"
ITEM_VECTORS = "item_vectors.npy"
INDEX = "index.faiss"
ENCODER = "encoder.npz"
USER_IDS = "user_ids.json"
POPULAR = "popular.json"
ITEM_PRIOR = "item_prior.npy"
COLD_ITEMS = "cold_items.json"
CHECKPOINT = "checkpoint.pt"
SERVING_FILES = (ITEM_IDS, ITEM_CATEGORIES, ITEM_VECTORS, INDEX, ENCODER, USER_IDS, POPULAR)
# Served when the manifest lists them; versions written before they existed still load.
OPTIONAL_SERVING_FILES = (ITEM_PRIOR, COLD_ITEMS)
_VERSION_DIR = re.compile(r"^v(\d{8})$")


@dataclass(frozen=True)
class Watermark:
    """The newest feedback a version was trained on: per-partition stream ids and the
    ingest time (server clock, seconds) of the newest event; None before any feedback."""

    ingest_time: float | None = None
    stream_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    version: int
    parent: int | None
    created_at: float
    dim: int
    n_items: int
    index_type: str  # "flat" | "ivf"
    nprobe: int
    history_len: int
    files: dict[str, str]  # name -> sha256
    loss: dict[str, Any]
    watermark: Watermark
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ArtifactError(f"unsupported manifest format {raw.get('format')!r}")
        raw["watermark"] = Watermark(**raw["watermark"])
        return cls(**raw)


def version_dir(root: Path, version: int) -> Path:
    return root / f"v{version:08d}"


def list_versions(root: Path) -> list[int]:
    """Complete versions under ``root``, oldest first (temporary dirs are not versions)."""
    if not root.is_dir():
        return []
    found = (_VERSION_DIR.match(p.name) for p in root.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version(
    root: Path,
    *,
    version: int,
    parent: int | None,
    item_ids: Sequence[str],
    categories: Sequence[str | None],
    vectors: np.ndarray,
    encoder: UserEncoder,
    popular: Sequence[str],
    loss: Mapping[str, Any],
    watermark: Watermark,
    index: Any,
    item_prior: np.ndarray | None = None,
    cold_rows: Sequence[int] | None = None,
    extra_files: Mapping[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a complete version directory atomically and return its path.

    ``vectors`` (N, D) are unit rows; ``index`` an inner-product FAISS index over them with
    ids = rows, flat or IVF (which index to build, and when to train a new one, is the
    writer's policy). ``item_prior`` (N,) is written as ``item_prior.npy`` when given,
    ``cold_rows`` (the rows whose vector is an untrained cold-start one) as
    ``cold_items.json``, ascending (given empty: written, listing none; None: not written,
    which reads the same).
    ``extra_files`` maps a file name (such as ``checkpoint.pt``) to a
    function that writes it; it is checksummed like the rest. Raises ArtifactError if the
    version already exists or the inputs disagree.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    norms = np.linalg.norm(vectors, axis=1)  # (N,)
    if n and not np.allclose(norms, 1.0, atol=1e-3):
        raise ArtifactError("item vectors must be unit rows")
    if len(item_ids) != n or len(categories) != n:
        raise ArtifactError("item_ids, categories and vectors must have the same length")
    if len(set(item_ids)) != n:
        raise ArtifactError("item ids must be unique")
    if encoder.dim != dim:
        raise ArtifactError(f"encoder dim {encoder.dim} != item dim {dim}")
    if index.ntotal != n or index.d != dim:
        raise ArtifactError(f"the given index has {index.ntotal} x {index.d}, not {n} x {dim}")
    if item_prior is not None:
        item_prior = np.asarray(item_prior, dtype=np.float32)
        if item_prior.shape != (n,) or not np.isfinite(item_prior).all():
            raise ArtifactError(f"item prior {item_prior.shape} must be ({n},) and finite")
    cold = None if cold_rows is None else sorted({int(r) for r in cold_rows})
    if cold and not (cold[0] >= 0 and cold[-1] < n):
        raise ArtifactError(f"cold rows must be in [0, {n})")
    final = version_dir(root, version)
    if final.exists():
        raise ArtifactError(f"version {version} already exists at {final}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-v{version:08d}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.save(tmp / ITEM_VECTORS, vectors)
        if item_prior is not None:
            np.save(tmp / ITEM_PRIOR, item_prior)
        ivf = faiss.try_extract_index_ivf(index)
        index_type, nprobe = ("flat", 0) if ivf is None else ("ivf", int(ivf.nprobe))
        faiss.write_index(index, str(tmp / INDEX))
        _write_json(tmp / ITEM_IDS, list(item_ids))
        _write_json(tmp / ITEM_CATEGORIES, list(categories))
        _write_json(tmp / USER_IDS, sorted(encoder.user_index, key=encoder.user_index.__getitem__))
        _write_json(tmp / POPULAR, list(popular))
        if cold is not None:
            _write_json(tmp / COLD_ITEMS, cold)
        encoder.save(tmp / ENCODER)
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        manifest = Manifest(
            version=version,
            parent=parent,
            created_at=time.time(),
            dim=dim,
            n_items=n,
            index_type=index_type,
            nprobe=nprobe,
            history_len=encoder.history_len,
            files=files,
            loss=dict(loss),
            watermark=watermark,
        )
        (tmp / MANIFEST).write_text(manifest.to_json())
        for p in tmp.iterdir():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_manifest(path: Path) -> Manifest:
    """The manifest of a version directory; ArtifactError if missing or malformed."""
    try:
        return Manifest.from_json((path / MANIFEST).read_text())
    except ArtifactError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"cannot read manifest of {path}: {exc}") from exc


def verify_files(path: Path, manifest: Manifest, names: Sequence[str]) -> None:
    """Check the sha256 of ``names`` against the manifest; ArtifactError on any mismatch."""
    for name in names:
        expected = manifest.files.get(name)
        if expected is None:
            raise ArtifactError(f"{path}: manifest lists no {name}")
        try:
            actual = sha256_file(path / name)
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot read {name}: {exc}") from exc
        if actual != expected:
            raise ArtifactError(f"{path}: {name} does not match its sha256 in the manifest")


@dataclass(frozen=True)
class ModelVersion:
    """Everything the service needs from one version, loaded and validated. Immutable:
    a request takes one reference and uses it throughout. The item vectors are held once:
    mapped from the file, and searched directly when the catalog is flat."""

    path: Path
    manifest: Manifest
    item_ids: ItemIds  # row -> id, and id -> row
    categories: Categories
    vectors: np.ndarray  # (N, D) float32, memory-mapped
    index: Any  # faiss.Index over ``vectors``; None for a flat catalog
    encoder: UserEncoder
    popular: list[str]
    item_prior: np.ndarray  # (N,) float32; zeros for a version written without one
    # Rows still carrying an untrained cold-start vector; empty for a version written
    # without the record (every row learned).
    cold_rows: frozenset[int] = frozenset()

    @property
    def version(self) -> int:
        return self.manifest.version

    def nearest(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``m`` rows nearest to each of ``queries`` (Q, D), best first: scores, ids
        (Q, m) each, exact scores (``veto.search.nearest``)."""
        return nearest(self.index, self.vectors, queries, m)


def load_version(
    path: Path, *, verify: bool = True, previous: ModelVersion | None = None
) -> ModelVersion:
    """Load a version for serving, checking every serving file against the manifest and the
    arrays against each other. Raises ArtifactError on anything inconsistent.

    ``previous`` (the version being served) lends its catalog and user lookups when the new
    version's files have the same sha256: a fine-tuned version keeps them, and a long-running
    service then neither parses N ids again nor churns the allocator on every swap (RSS
    creep in the soak benchmark)."""
    manifest = read_manifest(path)
    optional = [name for name in OPTIONAL_SERVING_FILES if name in manifest.files]
    if verify:
        verify_files(path, manifest, [*SERVING_FILES, *optional])

    def unchanged(name: str) -> ModelVersion | None:
        """``previous`` when it has the same ``name`` file, byte for byte."""
        if previous is not None and previous.manifest.files.get(name) == manifest.files[name]:
            return previous
        return None

    try:
        same = unchanged(ITEM_IDS)
        item_ids = same.item_ids if same else ItemIds(json.loads((path / ITEM_IDS).read_text()))
        same = unchanged(ITEM_CATEGORIES)
        categories = (
            same.categories
            if same
            else Categories(json.loads((path / ITEM_CATEGORIES).read_text()))
        )
        same = unchanged(USER_IDS)
        user_ids: list[str] | dict[str, int] = (
            same.encoder.user_index if same else json.loads((path / USER_IDS).read_text())
        )
        popular: list[str] = json.loads((path / POPULAR).read_text())
        vectors = np.load(path / ITEM_VECTORS, mmap_mode="r")
        index = None if manifest.index_type == "flat" else faiss.read_index(str(path / INDEX))
        encoder = UserEncoder.load(path / ENCODER, user_ids)
        prior = (
            np.load(path / ITEM_PRIOR)
            if ITEM_PRIOR in optional
            else np.zeros(manifest.n_items, dtype=np.float32)
        )
        cold_raw = json.loads((path / COLD_ITEMS).read_text()) if COLD_ITEMS in optional else []
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"cannot load {path}: {exc}") from exc
    n, dim = manifest.n_items, manifest.dim
    if vectors.shape != (n, dim) or vectors.dtype != np.float32:
        raise ArtifactError(f"{path}: item vectors {vectors.shape} do not match the manifest")
    if (
        len(item_ids) != n
        or len(categories) != n
        or (index is not None and (index.ntotal != n or index.d != dim))
    ):
        raise ArtifactError(f"{path}: item ids, categories or index do not match the manifest")
    if encoder.dim != dim:
        raise ArtifactError(f"{path}: encoder dim {encoder.dim} != {dim}")
    if prior.shape != (n,) or prior.dtype != np.float32 or not np.isfinite(prior).all():
        raise ArtifactError(f"{path}: item prior {prior.shape} does not match the manifest")
    if not isinstance(cold_raw, list) or not all(type(r) is int and 0 <= r < n for r in cold_raw):
        raise ArtifactError(f"{path}: {COLD_ITEMS} must list rows in [0, {n})")
    if index is not None and manifest.index_type == "ivf":
        faiss.extract_index_ivf(index).nprobe = manifest.nprobe
    return ModelVersion(
        path=path,
        manifest=manifest,
        item_ids=item_ids,
        categories=categories,
        vectors=vectors,
        index=index,
        encoder=encoder,
        popular=[p for p, row in zip(popular, item_ids.rows(popular), strict=True) if row >= 0],
        item_prior=prior,
        cold_rows=frozenset(cold_raw),
    )


def prune(root: Path, *, keep: int, protect: set[int] | None = None) -> list[int]:
    """Delete all but the newest ``keep`` versions (never those in ``protect``, such as the
    current one). Returns the versions removed."""
    versions = list_versions(root)
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in (protect or set())]
    for v in doomed:
        shutil.rmtree(version_dir(root, v), ignore_errors=True)
    return doomed
