"""Staged writes: the destination holds the old result or the new one, never a part."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from serving.files import sha256_file, staged, write_bytes_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "map.tif"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), staged(target, suffix=".tif") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".map.tif.")
        assert tmp.suffix == ".tif"
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_a_staged_folder_replaces_nothing_until_complete(tmp_path: Path) -> None:
    target = tmp_path / "models" / "v1"
    with pytest.raises(ValueError), staged(target, directory=True, prefix=".v1-") as tmp:
        (tmp / "model.onnx").write_bytes(b"graph")
        raise ValueError("parity failed")
    assert not target.exists() and list(target.parent.iterdir()) == []

    with staged(target, directory=True) as tmp:
        (tmp / "model.onnx").write_bytes(b"graph")
    assert [p.name for p in target.iterdir()] == ["model.onnx"]
    assert [p.name for p in target.parent.iterdir()] == ["v1"]


def test_sha256_of_a_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # several read blocks
    path = write_bytes_atomic(tmp_path / "blob", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_a_staged_file_gets_the_permissions_of_an_ordinary_write(tmp_path: Path) -> None:
    from serving.files import UMASK

    target = write_bytes_atomic(tmp_path / "shared.tif", b"x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~UMASK
    with staged(tmp_path / "folder", directory=True) as tmp:
        (tmp / "a").write_bytes(b"a")
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~UMASK
