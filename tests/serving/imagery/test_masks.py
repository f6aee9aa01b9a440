"""Clear-sky masks: SCL classes on generated and real products, the cloud model on real labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.imagery.masks import SCL_NAMES, csmask_clear, scl_clear
from serving.imagery.sources import items_from_safe, load_items
from tests.serving.imagery.conftest import DATA, SAFE_ROOT

#: What every SCL class means for a land-cover composite (11, snow, by default).
EXPECTED_CLEAR = {0: False, 1: False, 2: True, 3: False, 4: True, 5: True, 6: True,
                  7: True, 8: False, 9: False, 10: False, 11: False}


@pytest.mark.parametrize("code", sorted(SCL_NAMES))
def test_each_scl_class_is_clear_or_not(code: int) -> None:
    scl = np.full((3, 3), code, np.uint8)
    assert scl_clear(scl).all() == EXPECTED_CLEAR[code], SCL_NAMES[code]
    assert scl_clear(scl, snow_is_clear=True).all() == (EXPECTED_CLEAR[code] or code == 11)


@pytest.mark.parametrize("pattern", ["*N0212*.SAFE", "*N0400*.SAFE"])
def test_scl_mask_of_real_products(pattern: str) -> None:
    """Loaded through the STAC path, clear pixels are exactly the product's clear SCL."""
    safe = next(SAFE_ROOT.glob(pattern))
    item = items_from_safe([safe])[0]
    loaded = load_items([item], ["B02", "B04"], mask="scl", cloud_buffer=0)
    # The SCL file at the grid's resolution (the first band's), read directly.
    res = round(loaded.grid.resolution)
    suffix = "60m" if res == 60 else "20m" if res == 20 else None
    scl_file = (next(safe.glob(f"GRANULE/*/IMG_DATA/R{suffix}/*SCL_{suffix}.*"))
                if suffix else next(safe.glob("GRANULE/*/IMG_DATA/R20m/*SCL*")))
    with rasterio.open(scl_file) as src:
        scl = src.read(1)
    acq = loaded.acquisitions[0]
    clear = acq.clear.compute()
    observed = np.isfinite(acq.bands.compute()).all(axis=0)
    assert clear.shape == scl.shape
    np.testing.assert_array_equal(clear, scl_clear(scl) & observed)
    # Both products hold clear and unclear classes, so the test can tell them apart.
    assert 0 < clear.mean() < 1
    assert set(np.unique(scl)) & {3, 8, 9, 10}


def test_cloud_model_against_human_labels() -> None:
    """ukis-csmask on a real Sentinel-2 image against human cloud/shadow labels."""
    data = np.load(DATA / "cloudmask" / "sentinel2.npz")
    image = np.moveaxis(data["img"], -1, 0)
    truth_unclear = np.isin(data["msk"][..., 0], (0, 4))
    clear = csmask_clear(image, ["B02", "B03", "B04", "B08", "B11", "B12"],
                         invalid_buffer=0, threads=2)
    unclear = ~clear
    iou = (unclear & truth_unclear).sum() / (unclear | truth_unclear).sum()
    accuracy = (unclear == truth_unclear).mean()
    print(f"cloud+shadow IoU {iou:.3f}, pixel accuracy {accuracy:.3f}")
    # Measured 0.733 / 0.891 (l2a model, no buffer); the model's default 4 px buffer
    # lowers both against these tight human outlines.
    assert iou > 0.7
    assert accuracy > 0.85


def test_cloud_model_runs_without_torch(tmp_path: Path) -> None:
    """The csmask path is ONNX Runtime only: it runs where torch cannot be imported."""
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "from serving.imagery.masks import csmask_clear\n"
        f"d = np.load({str(DATA / 'cloudmask' / 'sentinel2.npz')!r})\n"
        "img = np.moveaxis(d['img'][:256, :256], -1, 0)\n"
        "m = csmask_clear(img, ['B02', 'B03', 'B04', 'B08', 'B11', 'B12'])\n"
        "assert 'torch' not in sys.modules\n"
        "print(m.mean())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3], timeout=300)
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout.split()[-1]) < 1


def test_cloud_model_needs_its_bands() -> None:
    with pytest.raises(ValueError, match="B02, B03, B04 and B08"):
        csmask_clear(np.zeros((2, 8, 8), np.float32), ["B02", "B03"])


def test_clouds_and_shadows_are_grown_by_the_buffer_across_blocks() -> None:
    """A cloud at a block edge masks its neighbours in the next block; no-data does not."""
    from serving.imagery.masks import scl_clear_buffered

    scl = np.full((1, 12), 4, np.uint8)
    scl[0, 5] = 9   # cloud
    scl[0, 11] = 0  # no data: not buffered
    clear = scl_clear_buffered(scl, 2)
    assert clear[0].tolist() == [True] * 3 + [False] * 5 + [True] * 3 + [False]


def test_the_buffer_reaches_across_dask_blocks(tmp_path: Path) -> None:
    import datetime as dt

    from tests.serving.imagery.conftest import BANDS, surface, write_item

    scl = np.full((32, 32), 4, np.uint8)
    scl[:, 15] = 8  # the last column of the first 16-px block
    item = write_item(tmp_path, "a", dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                      surface(0, 32), scl)
    clear = load_items([item], BANDS, chunk=16, cloud_buffer=3).acquisitions[0].clear
    got = clear.compute()
    assert not got[:, 12:19].any() and got[:, :12].all() and got[:, 19:].all()
