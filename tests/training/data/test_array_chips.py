"""Labelled arrays without georeferencing → chips the data module reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from cacaomap.main import main
from training.data.array_chips import GEOREFERENCING_TAG
from training.data.datamodule import LandCoverDataModule


def _npz(path: Path, side: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((*side, 6), dtype=np.float32)
    mask = rng.integers(0, 5, (*side, 1), dtype=np.uint8)
    np.savez(path, img=image, msk=mask)
    return image, mask[..., 0]


def test_chips_reassemble_to_the_arrays_and_split_by_file(tmp_path: Path) -> None:
    a_img, _ = _npz(tmp_path / "a.npz", (130, 96), 0)  # 2 x 1 whole chips of 64
    _, b_msk = _npz(tmp_path / "b.npz", (64, 128), 1)  # 1 x 2
    out = tmp_path / "chips"
    main(["imagery", "array-chips", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"),
          str(out), "--size", "64"])
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["a_0_0.tif", "a_1_0.tif", "b_0_0.tif", "b_0_1.tif"]
    assert names == sorted(p.name for p in (out / "labels").iterdir())
    with rasterio.open(out / "images" / "a_1_0.tif") as src:
        assert src.count == 6 and src.crs.to_epsg() == 3857
        assert src.tags()["georeferencing"] == GEOREFERENCING_TAG
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, -1), a_img[64:128, :64])
    with rasterio.open(out / "labels" / "b_0_1.tif") as src:
        np.testing.assert_array_equal(src.read(1), b_msk[:, 64:128])

    # the chips train as a chip dataset: whole chips per split, no two chips overlap
    dm = LandCoverDataModule(
        images=str(out / "images"), labels=str(out / "labels"), image_glob="*.tif",
        label_glob="*.tif", filename_regex=r"^(?P<chip>.+)\.tif$", image_nodata=None,
        all_bands=["b1", "b2", "b3", "b4", "b5", "b6"], split_by="file",
        label_map={0: 1, 1: 2, 2: 2, 3: 2, 4: 3}, split_fractions=(0.5, 0.25, 0.25))
    dm.setup("fit")
    assert dm.assignment is not None and len(dm.assignment.blocks) == 4

    with pytest.raises(SystemExit, match="chips exists"):
        main(["imagery", "array-chips", str(tmp_path / "a.npz"), str(out)])
    assert sorted(p.name for p in (out / "images").iterdir()) == names


def test_bad_arrays_are_named(tmp_path: Path) -> None:
    from training.data.array_chips import write_array_chips

    np.savez(tmp_path / "k.npz", image=np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match=r"has no \['img', 'msk'\]"):
        write_array_chips([tmp_path / "k.npz"], tmp_path / "o")
    np.savez(tmp_path / "g.npz", img=np.zeros((64, 64, 3)), msk=np.zeros((32, 64)))
    with pytest.raises(ValueError, match="grids differ"):
        write_array_chips([tmp_path / "g.npz"], tmp_path / "o")
    np.savez(tmp_path / "s.npz", img=np.zeros((16, 16, 3)), msk=np.zeros((16, 16)))
    with pytest.raises(ValueError, match="smaller than one 128 px chip"):
        write_array_chips([tmp_path / "s.npz"], tmp_path / "o")
    assert not (tmp_path / "o").exists()
