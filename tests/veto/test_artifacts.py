"""veto.artifacts: the model-version directory contract between trainer and service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from tests.version_factory import DIM, small_world, write_demo_version
from trainer.data.synthetic import SyntheticWorld
from trainer.online.index import build_index
from veto import artifacts
from veto.artifacts import (
    ArtifactError,
    Watermark,
    list_versions,
    load_version,
    prune,
    read_manifest,
    version_dir,
    write_version,
)
from veto.encoder import UserEncoder
from veto.events import N_EVENT_TYPES


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query  # (N,)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _write_v1(
    root: Path,
    encoder: UserEncoder,
    *,
    item_ids: list[str] | None = None,
    extra_files: dict[str, Callable[[Path], None]] | None = None,
    item_prior: np.ndarray | None = None,
    world: SyntheticWorld | None = None,
    index: Any = None,
    cold_rows: list[int] | None = None,
) -> Path:
    """Version 1 of ``world`` (the small world) with ``encoder``, its ids or index replaced
    when given."""
    world = world or small_world()
    return write_version(
        root,
        version=1,
        parent=None,
        item_ids=world.item_ids if item_ids is None else item_ids,
        categories=world.categories,
        vectors=world.item_vectors,
        encoder=encoder,
        popular=[],
        loss={},
        watermark=Watermark(),
        index=(
            build_index(world.item_vectors, flat_max_items=1000, nprobe=4)
            if index is None
            else index
        ),
        extra_files=extra_files,
        item_prior=item_prior,
        cold_rows=cold_rows,
    )


def test_flat_round_trip_preserves_every_array(artifacts_dir: Path) -> None:
    world = small_world()
    path = write_demo_version(artifacts_dir, 1, ingest_time=123.5)
    loaded = load_version(path)

    assert path == version_dir(artifacts_dir, 1)
    assert loaded.version == 1
    assert loaded.manifest.index_type == "flat"
    assert loaded.manifest.n_items == len(world.item_ids) and loaded.manifest.dim == DIM
    assert loaded.manifest.watermark == Watermark(ingest_time=123.5, stream_ids={"0": "1-0"})
    assert loaded.item_ids.tolist() == world.item_ids
    assert loaded.categories.tolist() == world.categories
    assert loaded.item_ids.get("i7") == 7
    np.testing.assert_allclose(loaded.vectors, world.item_vectors, atol=1e-6)
    assert loaded.popular == world.item_ids[:5]
    assert loaded.encoder.history_len == 8 and loaded.encoder.dim == DIM
    # A flat catalog is searched over its mapped vectors: no second copy in an index.
    assert loaded.index is None
    query = np.ascontiguousarray(world.item_vectors[3:4])
    _, ids = loaded.nearest(query, 10)
    assert [int(i) for i in ids[0]] == _exact_top(world.item_vectors, query[0], 10)


def test_ivf_round_trip_above_flat_max_items(artifacts_dir: Path) -> None:
    world = small_world(n_items=400)
    path = write_demo_version(artifacts_dir, 2, world=world, flat_max_items=100)
    loaded = load_version(path)

    assert loaded.manifest.index_type == "ivf"
    assert isinstance(loaded.index, faiss.IndexIVFScalarQuantizer)
    ivf = faiss.extract_index_ivf(loaded.index)
    assert ivf.nprobe == loaded.manifest.nprobe == 4
    assert loaded.index.ntotal == 400
    # With every list probed, the 8-bit candidates re-scored exactly are brute force's.
    ivf.nprobe = ivf.nlist
    query = np.ascontiguousarray(world.item_vectors[11:12])
    scores, ids = loaded.nearest(query, 10)
    assert [int(i) for i in ids[0]] == _exact_top(world.item_vectors, query[0], 10)
    np.testing.assert_allclose(scores[0], world.item_vectors[ids[0]] @ query[0], rtol=1e-5)


def test_ivf_flat_version_of_an_older_trainer_still_loads(artifacts_dir: Path) -> None:
    world = small_world(n_items=400)
    index = build_index(world.item_vectors, flat_max_items=100, nprobe=4, encoding="flat")
    loaded = load_version(_write_v1(artifacts_dir, _encoder(), world=world, index=index))

    assert isinstance(loaded.index, faiss.IndexIVFFlat)
    faiss.extract_index_ivf(loaded.index).nprobe = 1000
    query = np.ascontiguousarray(world.item_vectors[5:6])
    _, ids = loaded.nearest(query, 10)
    assert [int(i) for i in ids[0]] == _exact_top(world.item_vectors, query[0], 10)


def test_manifest_lists_sha256_of_every_file(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    manifest = read_manifest(path)
    on_disk = {p.name for p in path.iterdir()} - {artifacts.MANIFEST}
    assert set(manifest.files) == on_disk
    for name, digest in manifest.files.items():
        assert artifacts.sha256_file(path / name) == digest


def test_extra_files_are_written_and_checksummed(artifacts_dir: Path) -> None:
    encoder = UserEncoder.initial(dim=DIM, history_len=8, n_types=N_EVENT_TYPES)
    path = _write_v1(
        artifacts_dir, encoder, extra_files={artifacts.CHECKPOINT: lambda p: p.write_bytes(b"ckpt")}
    )
    assert (path / artifacts.CHECKPOINT).read_bytes() == b"ckpt"
    assert artifacts.CHECKPOINT in read_manifest(path).files


def test_failing_extra_file_writer_leaves_no_directory(artifacts_dir: Path) -> None:
    encoder = UserEncoder.initial(dim=DIM, history_len=8, n_types=N_EVENT_TYPES)

    def explode(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _write_v1(artifacts_dir, encoder, extra_files={artifacts.CHECKPOINT: explode})
    assert list(artifacts_dir.iterdir()) == []  # neither v00000001 nor a .tmp-* dir
    assert list_versions(artifacts_dir) == []


@pytest.mark.parametrize("name", [artifacts.ITEM_VECTORS, artifacts.INDEX, artifacts.ITEM_IDS])
def test_tampered_file_is_refused(artifacts_dir: Path, name: str) -> None:
    path = write_demo_version(artifacts_dir, 1)
    with (path / name).open("r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(path)


def test_missing_file_is_refused(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    (path / artifacts.ENCODER).unlink()
    with pytest.raises(ArtifactError, match=r"encoder\.npz"):
        load_version(path)


def test_missing_or_malformed_manifest_is_refused(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    (path / artifacts.MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest"):
        load_version(path)
    (path / artifacts.MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="manifest"):
        load_version(path)


def test_unsupported_manifest_format_is_refused(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    raw = json.loads((path / artifacts.MANIFEST).read_text())
    raw["format"] = 99
    (path / artifacts.MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="format"):
        load_version(path)


def test_manifest_disagreeing_with_arrays_is_refused(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    raw = json.loads((path / artifacts.MANIFEST).read_text())
    raw["n_items"] += 1
    (path / artifacts.MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="do not match"):
        load_version(path)


def test_existing_version_is_an_error_and_left_intact(artifacts_dir: Path) -> None:
    path = write_demo_version(artifacts_dir, 1)
    before = read_manifest(path)
    with pytest.raises(ArtifactError, match="already exists"):
        write_demo_version(artifacts_dir, 1)
    assert read_manifest(path) == before
    assert sorted(p.name for p in artifacts_dir.iterdir()) == ["v00000001"]


@pytest.mark.parametrize(
    ("field", "message"),
    [("ids", "same length"), ("duplicate", "unique"), ("dim", "encoder dim")],
)
def test_inconsistent_inputs_write_nothing(artifacts_dir: Path, field: str, message: str) -> None:
    world = small_world()
    ids = list(world.item_ids)
    dim = DIM
    if field == "ids":
        ids = ids[:-1]
    elif field == "duplicate":
        ids[1] = ids[0]
    else:
        dim = DIM * 2
    encoder = UserEncoder.initial(dim=dim, history_len=8, n_types=N_EVENT_TYPES)
    with pytest.raises(ArtifactError, match=message):
        _write_v1(artifacts_dir, encoder, item_ids=ids)
    assert list(artifacts_dir.iterdir()) == []


def test_list_versions_ignores_temp_dirs_and_stray_files(artifacts_dir: Path) -> None:
    write_demo_version(artifacts_dir, 3)
    write_demo_version(artifacts_dir, 1)
    (artifacts_dir / ".tmp-v00000004-deadbeef").mkdir()
    (artifacts_dir / "v00000005").write_text("a file, not a version")
    (artifacts_dir / "v5").mkdir()
    assert list_versions(artifacts_dir) == [1, 3]
    assert list_versions(artifacts_dir / "missing") == []


def test_prune_keeps_newest_and_protected(artifacts_dir: Path) -> None:
    world = small_world(n_items=40)
    for v in range(1, 6):
        write_demo_version(artifacts_dir, v, world=world)
    removed = prune(artifacts_dir, keep=2, protect={1})
    assert removed == [2, 3]
    assert list_versions(artifacts_dir) == [1, 4, 5]
    assert prune(artifacts_dir, keep=5) == []
    assert list_versions(artifacts_dir) == [1, 4, 5]


def test_unchanged_catalog_is_shared_with_the_previous_version(artifacts_dir: Path) -> None:
    world = small_world()
    first = load_version(write_demo_version(artifacts_dir, 1, world=world))
    again = load_version(write_demo_version(artifacts_dir, 2, world=world), previous=first)

    assert again.item_ids is first.item_ids
    assert again.categories is first.categories
    assert again.encoder.user_index is first.encoder.user_index
    assert again.version == 2 and again.vectors is not first.vectors


def test_changed_catalog_is_read_from_the_new_version(artifacts_dir: Path) -> None:
    first = load_version(write_demo_version(artifacts_dir, 1, world=small_world(seed=0)))
    other = small_world(n_items=300, seed=1)
    path = write_demo_version(artifacts_dir, 2, world=other)
    loaded = load_version(path, previous=first)

    assert loaded.item_ids.tolist() == other.item_ids and loaded.item_ids is not first.item_ids
    assert loaded.categories.tolist() == other.categories
    assert loaded.item_ids.get(other.item_ids[-1]) == 299


def test_tampered_catalog_is_refused_even_with_a_previous_version(artifacts_dir: Path) -> None:
    world = small_world()
    first = load_version(write_demo_version(artifacts_dir, 1, world=world))
    path = write_demo_version(artifacts_dir, 2, world=world)
    (path / artifacts.ITEM_IDS).write_text(json.dumps(list(reversed(world.item_ids))))
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(path, previous=first)


def _encoder() -> UserEncoder:
    return UserEncoder.initial(dim=DIM, history_len=8, n_types=N_EVENT_TYPES)


def test_item_prior_round_trips_and_is_checksummed(artifacts_dir: Path) -> None:
    prior = np.linspace(-2, 3, len(small_world().item_ids)).astype(np.float32)  # (N,)
    path = _write_v1(artifacts_dir, _encoder(), item_prior=prior)
    manifest = read_manifest(path)
    assert manifest.files[artifacts.ITEM_PRIOR] == artifacts.sha256_file(
        path / artifacts.ITEM_PRIOR
    )
    np.testing.assert_array_equal(load_version(path).item_prior, prior)


def test_a_version_without_an_item_prior_serves_with_zeros(artifacts_dir: Path) -> None:
    path = _write_v1(artifacts_dir, _encoder())  # as versions written before the prior
    assert not (path / artifacts.ITEM_PRIOR).exists()
    loaded = load_version(path)
    assert loaded.item_prior.shape == (len(loaded.item_ids),)
    assert loaded.item_prior.dtype == np.float32 and not loaded.item_prior.any()


def test_tampered_item_prior_is_refused(artifacts_dir: Path) -> None:
    n = len(small_world().item_ids)
    path = _write_v1(artifacts_dir, _encoder(), item_prior=np.zeros(n, dtype=np.float32))
    np.save(path / artifacts.ITEM_PRIOR, np.ones(n, dtype=np.float32))
    with pytest.raises(ArtifactError, match=r"item_prior\.npy"):
        load_version(path)


@pytest.mark.parametrize("prior", [np.zeros(3), np.full(200, np.nan)])
def test_an_item_prior_of_the_wrong_shape_or_not_finite_writes_nothing(
    artifacts_dir: Path, prior: np.ndarray
) -> None:
    with pytest.raises(ArtifactError, match="item prior"):
        _write_v1(artifacts_dir, _encoder(), item_prior=prior)
    assert list_versions(artifacts_dir) == []


def test_cold_rows_round_trip_and_are_checksummed(artifacts_dir: Path) -> None:
    path = _write_v1(artifacts_dir, _encoder(), cold_rows=[7, 3, 199, 3])
    assert json.loads((path / artifacts.COLD_ITEMS).read_text()) == [3, 7, 199]  # ascending
    assert load_version(path).cold_rows == frozenset({3, 7, 199})
    (path / artifacts.COLD_ITEMS).write_text("[3]")
    with pytest.raises(ArtifactError, match=r"cold_items\.json"):
        load_version(path)


def test_a_version_without_the_cold_record_has_every_row_learned(artifacts_dir: Path) -> None:
    path = _write_v1(artifacts_dir, _encoder())  # as versions written before the record
    assert not (path / artifacts.COLD_ITEMS).exists()
    assert artifacts.COLD_ITEMS not in read_manifest(path).files
    assert load_version(path).cold_rows == frozenset()


@pytest.mark.parametrize("rows", [[-1], [200]])
def test_cold_rows_outside_the_catalog_write_nothing(artifacts_dir: Path, rows: list[int]) -> None:
    with pytest.raises(ArtifactError, match="cold rows"):
        _write_v1(artifacts_dir, _encoder(), cold_rows=rows)
    assert list_versions(artifacts_dir) == []
