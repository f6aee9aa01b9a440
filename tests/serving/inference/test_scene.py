"""Scene classification: stitching, nodata, COG output and ground hectares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod, Transformer
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from serving.areas import AreaError, pixel_areas
from serving.inference.blending import column_groups, edge_weights, window_starts
from serving.inference.contract import load_model_dir
from serving.inference.scene import classify_file
from serving.inference.tiles import InputError, TileClassifier
from tests.model_factory import write_local_model


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> TileClassifier:
    """Tiles of 64 px overlapping by 16: margin 4 > the model's receptive radius 3."""
    return TileClassifier.from_model_dir(
        write_local_model(tmp_path_factory.mktemp("w") / "v1", tile_size=64, overlap=16)
    )


def _whole(classifier: TileClassifier, size: int) -> TileClassifier:
    onnx_path, contract = load_model_dir(Path(classifier.session._model_path).parent)
    contract.tile_size, contract.overlap = size, 0
    return TileClassifier(onnx_path, contract, classifier.session)


def _scene(path: Path, data: np.ndarray, crs: str | None = "EPSG:32718",
           transform: rasterio.Affine | None = None) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": str(data.dtype), "nodata": 0,
               "transform": transform or from_origin(333_000, 9_097_000, 10, 10)}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_window_starts_cover_the_scene() -> None:
    assert window_starts(200, 64, 48) == [0, 48, 96, 136]
    assert window_starts(50, 64, 48) == [0]
    assert column_groups([0, 48, 96, 136], 64, 120) == [[0, 48], [96, 136]]
    assert column_groups([0, 48, 96, 136], 64, 10) == [[0], [48], [96], [136]]
    assert column_groups([0, 48, 96, 136], 64, 4096) == [[0, 48, 96, 136]]
    w = edge_weights(48, 64, 200, 16)
    assert w[:4].max() == 0 and w[-4:].max() == 0 and w[8:56].min() == 1


def test_windows_equal_whole_scene_and_nodata_stays_nodata(
    windowed: TileClassifier, landscape: Path, tmp_path: Path
) -> None:
    with rasterio.open(landscape / "images" / "s2l2a_20240820.tif") as src:
        data = src.read(window=rasterio.windows.Window(0, 0, 200, 184))
    data[:, 100:110, 30:50] = 0  # a hole of nodata inside the scene
    scene = _scene(tmp_path / "scene.tif", data)
    tiled = classify_file(scene, tmp_path / "tiled.tif", windowed)
    whole = classify_file(scene, tmp_path / "whole.tif", _whole(windowed, 256))
    assert tiled.windows == 16 and whole.windows == 1
    a, b = _read(tmp_path / "tiled.tif"), _read(tmp_path / "whole.tif")
    nodata = (data == 0).all(0)
    assert (a[nodata] == 0).all() and (a[~nodata] != 0).all()
    # Equal away from a margin of the receptive radius (3 px) at the scene's edges,
    # where the whole-scene run padded the input to a multiple of 32.
    m = 3
    assert np.array_equal(a[m:-m, m:-m], b[m:-m, m:-m])
    assert (a != b).mean() < 0.02
    # Column groups of one or two windows carry their seams over: the same map.
    for block_px in (10, 120):
        narrow = classify_file(scene, tmp_path / f"narrow{block_px}.tif", windowed,
                               block_px=block_px)
        assert np.array_equal(_read(tmp_path / f"narrow{block_px}.tif"), a)
        assert narrow.class_pixels == tiled.class_pixels
        assert narrow.hectares is not None and tiled.hectares is not None
        # (the areal scale factor is sampled on a lattice anchored at each block)
        assert narrow.hectares == pytest.approx(tiled.hectares, rel=1e-5)
    # A hard cut (overlap 0) is not: tile-edge pixels see zero padding.
    cut = classify_file(scene, tmp_path / "cut.tif", windowed, overlap=0)
    assert cut.windows > 1
    assert not np.array_equal(_read(tmp_path / "cut.tif")[m:-m, m:-m], b[m:-m, m:-m])


def test_cog_keeps_crs_transform_and_colours(
    windowed: TileClassifier, landscape: Path, tmp_path: Path
) -> None:
    src_path = landscape / "images" / "s2l2a_20201215.tif"
    out = tmp_path / "classes.tif"
    result = classify_file(src_path, out, windowed)
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(src_path) as src, rasterio.open(out) as cls:
        assert cls.crs == src.crs and cls.transform == src.transform
        assert cls.nodata == 0 and cls.dtypes[0] == "uint8"
        assert cls.colormap(1)[2][:3] == (0x8D, 0x6E, 0x63)
        counts = np.bincount(cls.read(1).ravel(), minlength=6)
    assert result.class_pixels == dict(zip(windowed.contract.schema.names,
                                           counts.tolist(), strict=True))


def test_hectares_equal_a_hand_count_on_the_ellipsoid(
    windowed: TileClassifier, landscape: Path, tmp_path: Path
) -> None:
    with rasterio.open(landscape / "images" / "s2l2a_20201215.tif") as src:
        data = src.read(window=rasterio.windows.Window(0, 0, 64, 48))
        transform = src.transform
    scene = _scene(tmp_path / "small.tif", data, transform=transform)
    result = classify_file(scene, tmp_path / "small_classes.tif", windowed)
    classes = _read(tmp_path / "small_classes.tif")
    # Hand count: every pixel's corners to lon/lat, its area on the WGS84 ellipsoid.
    to_geo = Transformer.from_crs("EPSG:32718", "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")
    expected = np.zeros(6)
    for r in range(classes.shape[0]):
        for c in range(classes.shape[1]):
            xs = [transform.c + 10 * (c + dx) for dx in (0, 1, 1, 0)]
            ys = [transform.f - 10 * (r + dy) for dy in (0, 0, 1, 1)]
            lon, lat = to_geo.transform(xs, ys)
            expected[classes[r, c]] += abs(geod.polygon_area_perimeter(lon, lat)[0]) / 1e4
    got = np.array(list(result.hectares.values()))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-9)
    # Ground area differs from the UTM grid area (scale factor), by under 0.1% here.
    assert abs(got.sum() - classes.size * 0.01) / (classes.size * 0.01) < 1e-3


def test_geographic_crs_gives_ground_areas() -> None:
    transform = from_origin(-76.6, -8.1, 0.0001, 0.0001)
    areas = pixel_areas("EPSG:4326", transform, 3, 2)
    geod = Geod(ellps="WGS84")
    lon, lat = [-76.6, -76.5999, -76.5999, -76.6], [-8.1, -8.1, -8.1001, -8.1001]
    assert areas[0, 0] == pytest.approx(abs(geod.polygon_area_perimeter(lon, lat)[0]))
    assert 120 < areas[0, 0] < 124  # ~11 m x 11 m near 8 S


def test_no_crs_and_rotation_are_refused(windowed: TileClassifier, tmp_path: Path) -> None:
    data = np.full((10, 32, 32), 1000, np.uint16)
    with pytest.raises(AreaError, match="no CRS"):
        pixel_areas(None, from_origin(0, 0, 10, 10), 2, 2)
    scene = _scene(tmp_path / "nocrs.tif", data, crs=None)
    with pytest.raises(InputError, match="no CRS"):
        classify_file(scene, tmp_path / "x.tif", windowed)
    rotated = rasterio.Affine(10, 2, 333_000, 2, -10, 9_097_000)
    scene = _scene(tmp_path / "rot.tif", data, transform=rotated)
    with pytest.raises(InputError, match="rotated"):
        classify_file(scene, tmp_path / "y.tif", windowed)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()


def test_wrong_bands_and_dtype_are_refused(windowed: TileClassifier, tmp_path: Path) -> None:
    scene = _scene(tmp_path / "six.tif", np.full((6, 32, 32), 9, np.uint16))
    with pytest.raises(InputError, match="expected 10 bands"):
        classify_file(scene, tmp_path / "o.tif", windowed)
    scene = _scene(tmp_path / "f.tif", np.full((10, 32, 32), 9, np.float32))
    with pytest.raises(InputError, match="expected dtype uint16"):
        classify_file(scene, tmp_path / "o.tif", windowed)
    with pytest.raises(InputError, match="4-D"):
        windowed.classify(np.zeros((10, 8, 8), np.uint16))


def test_a_composite_is_classified_on_its_bands_and_never_seen_is_nodata(
        windowed: TileClassifier, tmp_path: Path) -> None:
    """A composite classifies like its bare scene; never-seen pixels are nodata.

    A composite is the model's bands and a last band ``clear_count``; pixels no
    acquisition saw clearly (count 0, reflectance 0) are never given a class.
    """
    from serving.imagery.composite import COUNT_BAND

    rng = np.random.default_rng(0)
    bands = rng.integers(300, 4000, (10, 80, 80)).astype(np.uint16)
    count = np.full((1, 80, 80), 4, np.uint16)
    count[0, 20:40, 30:60] = 0
    bands[:, 20:40, 30:60] = 0
    scene = _scene(tmp_path / "scene.tif", bands)
    composite = _scene(tmp_path / "composite.tif", np.concatenate([bands, count]))
    with rasterio.open(composite, "r+") as dst:
        dst.descriptions = (*[f"B{i}" for i in range(10)], COUNT_BAND)
    classify_file(scene, tmp_path / "a.tif", windowed)
    classify_file(composite, tmp_path / "b.tif", windowed)
    got = _read(tmp_path / "b.tif")
    np.testing.assert_array_equal(got, _read(tmp_path / "a.tif"))
    assert (got[20:40, 30:60] == 0).all() and (got[count[0] > 0] != 0).all()
    # Eleven bands without the count band's name are not a composite.
    plain = _scene(tmp_path / "eleven.tif", np.concatenate([bands, count]))
    with pytest.raises(InputError, match="clear_count"):
        classify_file(plain, tmp_path / "c.tif", windowed)
