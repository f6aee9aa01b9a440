"""The map page's result folders: private by default, bounded by count and by bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.http.map_page import new_result_folder, results_root
from serving.settings import Settings


def _fill(folder: Path, mib: int) -> None:
    (folder / "classes_current.tif").write_bytes(bytes(mib * 2**20))


def test_results_are_bounded_by_count_and_by_bytes(tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path, ui_keep=3, ui_keep_mb=4.5)
    made = []
    for _ in range(4):
        _, folder = new_result_folder(settings)
        _fill(folder, 1)
        made.append(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made[-3:])
    _, big = new_result_folder(settings)
    _fill(big, 4)  # with 1 + 1 MiB older: over 4.5 MiB, so the next prunes both
    _, newest = new_result_folder(settings)
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {big.name, newest.name}
    # Someone else's files in the folder are never touched.
    (tmp_path / "notes.txt").write_text("mine")
    new_result_folder(settings)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_removed_by_another_worker_is_skipped(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    settings = Settings(results_dir=tmp_path, ui_keep=2)
    _, first = new_result_folder(settings)
    os.utime(first, (1, 1))  # the oldest, whatever the clock's resolution
    original = Path.stat

    def gone(self: Path, **kwargs: object) -> os.stat_result:
        if self == first:  # listed, then pruned by another worker before stat
            raise FileNotFoundError(self)
        return original(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", gone)
    result_id, second = new_result_folder(settings)
    # the race costs nothing: a fresh folder, and the one "gone" neither counted nor removed
    assert second.name == result_id and os.path.isdir(second) and second != first
    assert os.path.isdir(first)  # (Path.stat is the patched one)
    monkeypatch.undo()
    _, third = new_result_folder(settings)  # both seen again: at the bound, the oldest goes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.name, third.name])


def test_the_default_folder_is_private_and_a_planted_one_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    root = results_root(Settings())
    assert root == tmp_path / f"cacaomap-results-{os.getuid()}"
    assert root.stat().st_mode & 0o777 == 0o700
    root.rmdir()
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    root.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="not a private folder"):
        results_root(Settings())
    root.unlink()
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    with pytest.raises(PermissionError, match="not a private folder"):
        results_root(Settings())


def test_one_caller_in_a_loop_evicts_its_own_results_not_anothers(tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path, ui_keep=4, ui_keep_per_caller=2)
    _, theirs = new_result_folder(settings, caller="b")
    mine = [new_result_folder(settings, caller="a")[1] for _ in range(20)]
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {theirs.name, mine[-2].name, mine[-1].name}
    # Over the total bound, the caller holding the most loses its oldest.
    others = [new_result_folder(settings, caller=c)[1] for c in ("c", "d")]
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {theirs.name, mine[-1].name, *(o.name for o in others)}
    assert not (tmp_path / mine[-2].name).exists()
