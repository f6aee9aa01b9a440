"""The optional Lee speckle filter.

More looks where the ground is uniform, edges kept, unseen pixels left out, and a stack
that does not depend on where the blocks are cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.radar.acquisitions import describe
from serving.radar.speckle import IW_LOOKS, Speckle, equivalent_looks, lee
from serving.radar.stack import stack_radar
from serving.radar.units import to_db

RNG = np.random.default_rng(11)


def tiny_optical(path: Path) -> Path:
    """An 8 x 8 one-band raster: a grid for commands that refuse before reading it."""
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="uint16", crs="EPSG:32718",
                       transform=rasterio.transform.from_origin(500_000, 9e6, 10, 10)) as d:
        d.write(np.ones((1, 8, 8), np.uint16))
    return path


def _speckled(truth: np.ndarray, looks: float = IW_LOOKS) -> np.ndarray:
    return (truth * RNG.gamma(looks, 1 / looks, truth.shape)).astype(np.float32)


def test_a_uniform_field_gains_looks_and_keeps_its_mean() -> None:
    field = _speckled(np.full((256, 256), 0.05, np.float32))
    filtered = lee(field, 5, IW_LOOKS)
    inner = (slice(8, -8), slice(8, -8))
    assert equivalent_looks(field[inner]) == pytest.approx(IW_LOOKS, rel=0.1)
    assert equivalent_looks(filtered[inner]) > 5 * IW_LOOKS  # 25 px of 4.4 looks each
    assert float(filtered[inner].mean()) == pytest.approx(0.05, rel=0.02)


def test_an_edge_is_kept_where_a_box_filter_would_blur_it() -> None:
    truth = np.full((512, 64), 0.02, np.float32)
    truth[:, 32:] = 0.2  # 10 dB step, e.g. bare soil against forest in VV
    field = _speckled(truth)
    filtered = lee(field, 5, IW_LOOKS)
    from scipy.ndimage import uniform_filter

    box = uniform_filter(field.astype(np.float64), 5)
    # the column next to the edge on the dark side, averaged along the edge in dB
    lee_err = abs(float(np.median(to_db(filtered[:, 31]))) - float(to_db(np.float32(0.02))))
    box_err = abs(float(np.median(to_db(box[:, 31]))) - float(to_db(np.float32(0.02))))
    assert box_err > 5.0  # the box mixes 2/5 of the bright side in
    assert lee_err < box_err / 2


def test_unseen_pixels_stay_unseen_and_do_not_darken_their_neighbours() -> None:
    field = _speckled(np.full((64, 64), 0.1, np.float32))
    field[20:40, 20:40] = np.nan
    filtered = lee(field, 7, IW_LOOKS)
    assert np.isnan(filtered[20:40, 20:40]).all()
    assert np.isfinite(filtered[np.isfinite(field)]).all()
    near = filtered[18:20, 20:40]  # two rows touching the hole
    assert float(np.mean(near)) == pytest.approx(0.1, rel=0.15)


def test_a_filtered_stack_does_not_depend_on_the_blocks_or_the_threads(
        region_data: Path, tmp_path: Path) -> None:
    import dataclasses

    optical = tmp_path / "optical.tif"
    with rasterio.open(next(iter(sorted((region_data / "radar").glob("*.tif"))))) as s1:
        bounds, crs = s1.bounds, s1.crs
    size = 250  # 10 m over the 2.5 km landscape: blocks of 64 cut it unevenly
    transform = rasterio.transform.from_bounds(*bounds, size, size)
    with rasterio.open(optical, "w", driver="GTiff", width=size, height=size, count=2,
                       dtype="uint16", crs=crs, transform=transform) as dst:
        dst.write(np.ones((2, size, size), np.uint16))
    files = [dataclasses.replace(describe(p), speckle=Speckle("lee", 5))
             for p in sorted((region_data / "radar").glob("*2024*.tif"))[:6]]
    one = stack_radar(optical, files, tmp_path / "one.tif", block=512)
    many = stack_radar(optical, files, tmp_path / "many.tif", block=64, workers=3)
    plain = stack_radar(optical, [dataclasses.replace(f, speckle=Speckle()) for f in files],
                        tmp_path / "plain.tif", block=512)
    with rasterio.open(one.path) as a, rasterio.open(many.path) as b, \
            rasterio.open(plain.path) as c:
        np.testing.assert_array_equal(a.read(), b.read())
        assert "lee 5x5" in a.tags()["RADAR_SPECKLE_FILTER"]
        vv_std = a.descriptions.index("VV_std_db") + 1
        # the filter smooths each date, so the dates differ less
        assert float(np.median(a.read(vv_std))) < float(np.median(c.read(vv_std)))


def test_a_bad_speckle_window_is_one_line(tmp_path: Path) -> None:
    from cacaomap.main import main

    optical = tiny_optical(tmp_path / "o.tif")
    with pytest.raises(SystemExit, match="odd side of 3 px or more; got 4"):
        main(["imagery", "stack-radar", "--optical", str(optical),
              "--radar", str(tmp_path / "r.tif"), "--radar-speckle-filter", "lee",
              "--radar-speckle-window", "4", "--out", str(tmp_path / "x.tif")])
