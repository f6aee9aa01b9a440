"""Many scenes, in-process: resumable by content hash, one bad scene does not stop it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rasterio

from cacaomap.main import main
from tests.model_factory import write_local_model


def test_folder_of_scenes_is_resumable(landscape: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = write_local_model(tmp_path / "m" / "v1")
    scenes = tmp_path / "scenes"
    shutil.copytree(landscape / "images", scenes)
    (scenes / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["maps", "classify", str(scenes), "--out", str(out), "--model", str(model)])
    first = capsys.readouterr().out
    assert "2 classified, 0 already done, 1 failed" in first and "broken.tif" in first
    assert len(list(out.glob("*.classes.tif"))) == 2
    assert not list(out.glob(".*"))  # no partial files left behind
    (scenes / "broken.tif").unlink()
    main(["maps", "classify", str(scenes), "--out", str(out), "--model", str(model)])
    assert "0 classified, 2 already done, 0 failed" in capsys.readouterr().out
    # A changed scene is not mistaken for a done one.
    shutil.copy(landscape / "images" / "s2l2a_20201215.tif", scenes / "renamed.tif")
    with rasterio.open(scenes / "s2l2a_20240820.tif", "r+") as dst:
        band = dst.read(1)
        band[10, 10] += 1
        dst.write(band, 1)
    main(["maps", "classify", str(scenes), "--out", str(out), "--model", str(model)])
    assert "2 classified, 1 already done" in capsys.readouterr().out
