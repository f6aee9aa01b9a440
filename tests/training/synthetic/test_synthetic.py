import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio

from training.synthetic import Landscape, LandscapeConfig, generate_landscape
from training.synthetic.landscape import FOREST, NODATA


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_files_crs_bands_and_dtypes(landscape: Path) -> None:
    truth = json.loads((landscape / "truth.json").read_text())
    for date in truth["config"]["dates"]:
        with rasterio.open(landscape / "images" / f"s2l2a_{date}.tif") as img:
            assert img.crs.to_epsg() == 32718
            assert img.count == 10 and img.dtypes[0] == "uint16"
            assert img.descriptions[0] == "B02" and img.descriptions[-1] == "B12"
            assert img.res == (10.0, 10.0) and img.nodata == 0
        with rasterio.open(landscape / "labels" / f"labels_{date}.tif") as lab:
            assert lab.dtypes[0] == "uint8"
            assert lab.transform == img.transform
            assert lab.colormap(1)[1][:3] == (0x1B, 0x5E, 0x20)


def test_generator_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = generate_landscape(tmp_path / "a", LandscapeConfig(size=96, seed=5),
                           polygons=False, progress=False)
    b = generate_landscape(tmp_path / "b", LandscapeConfig(size=96, seed=5),
                           polygons=False, progress=False)
    c = generate_landscape(tmp_path / "c", LandscapeConfig(size=96, seed=6),
                           polygons=False, progress=False)
    name = "images/s2l2a_20240820.tif"
    assert np.array_equal(_read(a / name), _read(b / name))
    assert not np.array_equal(_read(a / name), _read(c / name))


def test_strips_equal_whole_scene() -> None:
    land = Landscape(LandscapeConfig(size=80, seed=2))
    whole_img, whole_lab = land.render(0, 80, 1)
    top_img, top_lab = land.render(0, 33, 1)
    bottom_img, bottom_lab = land.render(33, 80, 1)
    assert np.array_equal(whole_img, np.concatenate([top_img, bottom_img], axis=1))
    assert np.array_equal(whole_lab, np.concatenate([top_lab, bottom_lab]))


def test_clouds_and_swath_edge_are_nodata(landscape: Path) -> None:
    image = _read(landscape / "images" / "s2l2a_20201215.tif")
    labels = _read(landscape / "labels" / "labels_20201215.tif")[0]
    assert (labels[(image == 0).all(0)] == NODATA).all()  # outside the swath
    bright = image[0] > 3000  # B02 reflectance > 0.3 only under cloud
    assert bright.any() and (labels[bright] == NODATA).all()
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4, 5}


def test_not_separable_by_a_single_band_threshold(landscape: Path) -> None:
    """Per-class spectra overlap: no band splits forest from cocoa cleanly."""
    image = _read(landscape / "images" / "s2l2a_20201215.tif").astype(float)
    labels = _read(landscape / "labels" / "labels_20201215.tif")[0]
    for band in image:
        f, c = band[labels == 1], band[labels == 2]
        overlap = min(f.max(), c.max()) - max(f.min(), c.min())
        assert overlap > 0


def test_plots_truth_matches_label_rasters(landscape: Path) -> None:
    plots = gpd.read_file(landscape / "plots.geojson")
    assert plots.crs.to_epsg() == 32718
    ref = _read(landscape / "labels" / "labels_20201215.tif")[0]
    cur = _read(landscape / "labels" / "labels_20240820.tif")[0]
    with rasterio.open(landscape / "labels" / "labels_20201215.tif") as src:
        transform = src.transform
    for _, plot in plots.iterrows():
        minx, miny, maxx, maxy = plot.geometry.bounds
        r0, c0 = rasterio.transform.rowcol(transform, minx, maxy)
        r1, c1 = rasterio.transform.rowcol(transform, maxx - 1e-6, miny + 1e-6)
        a, b = ref[r0 : r1 + 1, c0 : c1 + 1], cur[r0 : r1 + 1, c0 : c1 + 1]
        assert a.size == plot["pixels"]
        valid = (a != NODATA) & (b != NODATA)
        assert int((valid & (a == FOREST) & (b == 3)).sum()) == plot["loss_to_oil_palm_px"]
        assert int((valid & (a == FOREST)).sum()) == plot["forest_ref_px"]
    losing = plots[plots["forest_loss_ha"] > 0]
    assert len(losing) >= 2
    clouded = plots[plots["purpose"] == "half_clouded"].iloc[0]
    assert 0.3 < clouded["valid_fraction"] < 0.7
