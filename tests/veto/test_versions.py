"""The one rule for publishing a version, shared by ``veto versions publish`` and
``POST /v1/admin/publish``: the directory exists, loads as the service loads it, and its
manifest names that version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.version_factory import write_demo_version
from veto.artifacts import ITEM_VECTORS, version_dir
from veto.errors import EXIT_UNAVAILABLE, ArtifactError, UnknownVersion, exit_code
from veto.versions import check_publishable, version_rows


def test_a_valid_version_may_be_published(artifacts_dir: Path) -> None:
    write_demo_version(artifacts_dir, 1)
    write_demo_version(artifacts_dir, 2, parent=1)
    manifest = check_publishable(artifacts_dir, 1)
    assert manifest.version == 1


def test_a_version_not_on_disk_is_unknown_and_names_the_known_ones(artifacts_dir: Path) -> None:
    write_demo_version(artifacts_dir, 1)
    with pytest.raises(UnknownVersion, match=r"versions: 1\)") as exc:
        check_publishable(artifacts_dir, 9)
    assert exc.value.details == {"version": 9, "versions": [1]}
    assert exit_code(exc.value) == EXIT_UNAVAILABLE  # still an artifact error for the CLI


def test_a_tampered_version_or_one_whose_manifest_names_another_is_refused(
    artifacts_dir: Path,
) -> None:
    write_demo_version(artifacts_dir, 1)
    shutil.copytree(version_dir(artifacts_dir, 1), version_dir(artifacts_dir, 5))
    with pytest.raises(ArtifactError, match="manifest says version 1, not 5"):
        check_publishable(artifacts_dir, 5)
    path = version_dir(artifacts_dir, 1) / ITEM_VECTORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256") as exc:
        check_publishable(artifacts_dir, 1)
    assert not isinstance(exc.value, UnknownVersion)


def test_rows_carry_the_parent_and_mark_the_current_version(artifacts_dir: Path) -> None:
    write_demo_version(artifacts_dir, 1)
    write_demo_version(artifacts_dir, 2, parent=1)
    rows = version_rows(artifacts_dir, 2)
    assert [(r.version, r.parent, r.current) for r in rows] == [(1, None, False), (2, 1, True)]
