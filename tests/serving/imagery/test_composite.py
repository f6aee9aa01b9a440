"""Composites: harmonisation across processing baselines, median and count, dask, bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.imagery.composite import COUNT_BAND, composite_block, write_composite
from serving.imagery.geotiffs import acquisition_from_geotiff
from serving.imagery.harmonise import boa_offset
from serving.imagery.sources import (
    ImageryError,
    in_period,
    items_from_file,
    items_from_safe,
    load_items,
)
from tests.serving.imagery.conftest import BANDS, SAFE_ROOT, surface, write_item

CLEAR, CLOUD, SHADOW = 4, 9, 3


def _read(path: Path) -> tuple[np.ndarray, dict[str, str], tuple[str | None, ...]]:
    with rasterio.open(path) as src:
        return src.read(), src.tags(), src.descriptions


def test_real_products_say_their_offset() -> None:
    """02.12 carries no BOA offset; 04.00 carries -1000 DN in every band."""
    old, new = items_from_safe(sorted(SAFE_ROOT.glob("*.SAFE")))
    assert old.properties["s2:processing_baseline"] == "02.12"
    assert new.properties["s2:processing_baseline"] == "04.00"
    assert {boa_offset(old.properties, a.to_dict()) for k, a in old.assets.items()
            if k != "SCL"} == {0.0}
    assert {boa_offset(new.properties, a.to_dict()) for k, a in new.assets.items()
            if k != "SCL"} == {-1000.0}


def test_real_040_product_is_harmonised_when_loaded() -> None:
    """Loaded, the 04.00 product's DN are the file's DN minus 1000 (0 stays no data)."""
    safe = next(SAFE_ROOT.glob("*N0400*.SAFE"))
    item = items_from_safe([safe])[0]
    loaded = load_items([item], ["B04"], mask="none")
    raw_path = next(safe.glob("GRANULE/*/IMG_DATA/R60m/*B04_60m.jp2"))
    with rasterio.open(raw_path) as src:
        raw = src.read(1).astype(np.float32)
    got = loaded.acquisitions[0].bands.compute()[0]
    valid = raw > 1001
    np.testing.assert_array_equal(got[valid], raw[valid] - 1000)
    assert np.isnan(got[raw == 0]).all()


@pytest.mark.parametrize("raster_offset", [True, False])
def test_baselines_02_and_04_compose_to_the_same_reflectance(
        tmp_path: Path, raster_offset: bool) -> None:
    """The same surface at 02.14 and at 04.00 (+1000 DN in the file) gives one composite.

    With ``raster_offset=False`` only ``s2:processing_baseline`` tells the offset.
    """
    dn = surface(1)
    scl = np.full(dn.shape[1:], CLEAR)
    old = write_item(tmp_path / "a", "old", dt.datetime(2020, 3, 1, tzinfo=dt.UTC), dn, scl)
    new = write_item(tmp_path / "b", "new", dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dn, scl,
                     baseline="04.00", offset=-1000.0, raster_offset=raster_offset)
    outs = []
    for item in (old, new):
        loaded = load_items([item], BANDS)
        outs.append(_read(write_composite(loaded, tmp_path / f"{item.id}.tif").path)[0])
    diff = np.abs(outs[0][:-1].astype(int) - outs[1][:-1].astype(int))
    assert diff.max() <= 1
    np.testing.assert_array_equal(outs[0][:-1], dn)


def test_median_of_clear_observations_and_their_count(tmp_path: Path, when: dt.datetime
                                                      ) -> None:
    """Clouds, shadows and no data never enter the median; the count band says how many."""
    size = 32
    values = [1000, 2000, 3000, 9000]  # the last date is a cloud everywhere it is bright
    scls = [np.full((size, size), CLEAR) for _ in values]
    scls[3][:] = CLOUD
    scls[0][:8] = SHADOW           # rows 0-7: dates 1, 2 clear -> median 2500
    scls[1][8:16] = CLOUD          # rows 8-15: dates 0, 2 -> 2000
    for s in scls[:3]:
        s[16:20] = CLOUD           # rows 16-19: never clear -> 0 everywhere, count 0
    items = []
    for k, (v, scl) in enumerate(zip(values, scls, strict=True)):
        dn = np.full((len(BANDS), size, size), v, np.uint16)
        items.append(write_item(tmp_path / f"i{k}", f"i{k}", when + dt.timedelta(days=k),
                                dn, scl))
    loaded = load_items(items, BANDS, chunk=16, cloud_buffer=0)
    result = write_composite(loaded, tmp_path / "c.tif", period="2020-01-01/2020-12-31")
    data, tags, names = _read(result.path)
    assert names[-1] == COUNT_BAND and list(names[:-1]) == BANDS
    assert (data[0, :8] == 2500).all() and (data[-1, :8] == 2).all()
    assert (data[0, 8:16] == 2000).all() and (data[-1, 8:16] == 2).all()
    assert (data[:, 16:20] == 0).all()
    assert (data[0, 20:] == 2000).all() and (data[-1, 20:] == 3).all()
    assert result.never_clear_fraction == pytest.approx(4 / 32)
    # Lineage: items, mask source, method, period, baselines.
    assert json.loads(tags["CACAOMAP_ITEMS"]) == ["i0", "i1", "i2", "i3"]
    assert tags["CACAOMAP_MASK_SOURCE"] == "scl"
    assert tags["CACAOMAP_COMPOSITE_METHOD"] == "median"
    assert tags["CACAOMAP_PERIOD"] == "2020-01-01/2020-12-31"
    assert tags["DATE"] == "20201231"
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(str(result.path))[0]


def test_best_pixel_takes_the_greenest_clear_date() -> None:
    stack = np.full((3, len(BANDS), 2, 2), 500, np.float32)
    red, nir = BANDS.index("B04"), BANDS.index("B08")
    stack[:, nir] = np.array([1500, 4000, 6000])[:, None, None]  # date 2 is greenest
    clear = np.ones((3, 2, 2), bool)
    clear[2, 0, 0] = False  # ... but not clear at (0, 0): date 1 there
    out = composite_block(stack, clear, "best", red, nir)
    assert out[nir, 0, 0] == 4000 and out[nir, 1, 1] == 6000
    assert out[-1, 0, 0] == 2 and out[-1, 1, 1] == 3


@pytest.mark.slow
def test_distributed_cluster_writes_the_same_bytes(tmp_path: Path, when: dt.datetime
                                                   ) -> None:
    """A 2-worker LocalCluster (processes) and the local scheduler give one file."""
    from distributed import LocalCluster

    items = []
    for k in range(3):
        scl = np.full((96, 96), CLEAR)
        scl[k * 20: k * 20 + 30] = CLOUD
        items.append(write_item(tmp_path / f"i{k}", f"i{k}", when + dt.timedelta(days=k),
                                surface(k, 96), scl))
    local = write_composite(load_items(items, BANDS, chunk=32), tmp_path / "local.tif")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster:
        remote = write_composite(load_items(items, BANDS, chunk=32), tmp_path / "dist.tif",
                                 scheduler=cluster.scheduler_address)
    assert local.path.read_bytes() == remote.path.read_bytes()


# ----------------------------------------------------------------------- bad input
def test_a_period_with_no_items(tmp_path: Path, when: dt.datetime) -> None:
    item = write_item(tmp_path, "a", when, surface(0, 8), np.full((8, 8), CLEAR))
    with pytest.raises(ImageryError, match="no acquisition in the period 2024"):
        in_period([item], "2024-01-01/2024-12-31")
    with pytest.raises(ImageryError, match="START/END"):
        in_period([item], "2024")


def test_an_item_missing_a_band_or_its_scl(tmp_path: Path, when: dt.datetime) -> None:
    item = write_item(tmp_path, "a", when, surface(0, 8), None)
    with pytest.raises(ImageryError, match="no SCL asset: choose --mask csmask"):
        load_items([item], BANDS)
    del item.assets["B11"]
    with pytest.raises(ImageryError, match="item a has no asset for band B11"):
        load_items([item], BANDS, mask="none")
    # The real 04.00 product in the tests has no B08 at all.
    real = items_from_safe(list(SAFE_ROOT.glob("*N0400*.SAFE")))
    with pytest.raises(ImageryError, match="no asset for band B08"):
        load_items(real, ["B04", "B08"])


def test_items_in_two_utm_zones_are_reprojected_and_said(tmp_path: Path,
                                                         when: dt.datetime) -> None:
    a = write_item(tmp_path / "a", "a", when, surface(0, 32), np.full((32, 32), CLEAR),
                   crs="EPSG:32718", origin=(833_000.0, 9_097_000.0))
    b = write_item(tmp_path / "b", "b", when + dt.timedelta(days=5), surface(1, 32),
                   np.full((32, 32), CLEAR), crs="EPSG:32717",
                   origin=(166_800.0, 9_097_000.0))
    loaded = load_items([a, b], BANDS)
    assert loaded.grid.crs == "EPSG:32718"
    assert loaded.reprojected == ["b"]
    tags = _read(write_composite(loaded, tmp_path / "c.tif").path)[1]
    assert json.loads(tags["CACAOMAP_REPROJECTED_ITEMS"]) == ["b"]


def test_an_unreadable_asset_skips_its_item(tmp_path: Path, when: dt.datetime) -> None:
    good = write_item(tmp_path / "g", "good", when, surface(0, 16), np.full((16, 16), CLEAR))
    bad = write_item(tmp_path / "b", "bad", when + dt.timedelta(days=1), surface(1, 16),
                     np.full((16, 16), CLEAR))
    Path(bad.assets["B04"].href).write_bytes(b"not a tiff")
    loaded = load_items([good, bad], BANDS)
    assert [a.item_id for a in loaded.acquisitions] == ["good"]
    assert "B04" in loaded.skipped["bad"]
    tags = _read(write_composite(loaded, tmp_path / "c.tif").path)[1]
    assert "bad" in json.loads(tags["CACAOMAP_SKIPPED_ITEMS"])
    with pytest.raises(ImageryError, match="only 1 of 2 items are readable"):
        load_items([good, bad], BANDS, min_items=2)
    assert not (tmp_path / "d.tif").exists()


def test_a_mask_file_on_another_grid(tmp_path: Path) -> None:
    profile = {"driver": "GTiff", "width": 16, "height": 16, "dtype": "uint16",
               "crs": "EPSG:32718", "nodata": 0,
               "transform": rasterio.transform.from_origin(333_000, 9_097_000, 10, 10)}
    with rasterio.open(tmp_path / "scene.tif", "w", count=len(BANDS), **profile) as dst:
        dst.write(surface(0, 16))
    with rasterio.open(tmp_path / "mask.tif", "w", count=1,
                       **profile | {"width": 15}) as dst:
        dst.write(np.ones((1, 16, 15), np.uint16))
    with pytest.raises(ImageryError, match="not on the grid"):
        acquisition_from_geotiff(tmp_path / "scene.tif", BANDS, tmp_path / "mask.tif")


def test_a_stac_file_that_is_not_stac(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ImageryError, match="not a STAC item"):
        items_from_file(tmp_path / "x.json")


def test_the_composite_command(tmp_path: Path, when: dt.datetime,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """``cacaomap imagery composite`` from an ItemCollection on disk; errors name the problem."""
    import pystac

    from cacaomap.main import main

    items = [write_item(tmp_path / f"i{k}", f"i{k}", when + dt.timedelta(days=k),
                        surface(k, 32), np.full((32, 32), CLEAR)) for k in range(2)]
    collection = tmp_path / "items.json"
    pystac.ItemCollection(items).save_object(dest_href=str(collection))
    out = tmp_path / "c.tif"
    main(["imagery", "composite", "--stac", str(collection), "--period", "2020-01-01/2020-12-31",
          "--bands", *BANDS, "--out", str(out), "--cloud-buffer", "0"])
    assert "2 acquisitions (median, mask scl)" in capsys.readouterr().out
    data, tags, _ = _read(out)
    assert data.shape == (len(BANDS) + 1, 32, 32) and (data[-1] == 2).all()
    assert json.loads(tags["CACAOMAP_ITEMS"]) == ["i0", "i1"]
    with pytest.raises(SystemExit, match="no acquisition in the period 2023"):
        main(["imagery", "composite", "--stac", str(collection), "--period",
              "2023-01-01/2023-12-31", "--out", str(tmp_path / "x.tif")])
    with pytest.raises(SystemExit, match="exactly one of --stac, --safe, --search or --geotiff"):
        main(["imagery", "composite", "--period", "2020-01-01/2020-12-31", "--out",
              str(tmp_path / "x.tif")])
    assert not (tmp_path / "x.tif").exists()


def test_stacked_geotiffs_with_mask_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Today's stacked GeoTIFFs are a source too, read window by window, masks applied."""
    from cacaomap.main import main

    profile = {"driver": "GTiff", "width": 40, "height": 40, "crs": "EPSG:32718",
               "nodata": 0, "tiled": True, "blockxsize": 16, "blockysize": 16,
               "transform": rasterio.transform.from_origin(333_000, 9_097_000, 10, 10)}
    scenes, masks = [], []
    for k, value in enumerate((1000, 3000)):
        scene = tmp_path / f"s{k}.tif"
        with rasterio.open(scene, "w", count=len(BANDS), dtype="uint16", **profile) as dst:
            dst.write(np.full((len(BANDS), 40, 40), value, np.uint16))
            dst.update_tags(DATE=f"2020060{k + 1}")
        mask = tmp_path / f"m{k}.tif"
        with rasterio.open(mask, "w", count=1, dtype="uint8", **profile) as dst:
            clear = np.ones((40, 40), np.uint8)
            clear[:, 20 * k: 20 * k + 20] = 0  # s0 masked on the left, s1 on the right
            dst.write(clear, 1)
        scenes.append(scene)
        masks.append(mask)
    out = tmp_path / "c.tif"
    main(["imagery", "composite", "--geotiff", *map(str, scenes), "--mask-files",
          *map(str, masks), "--bands", *BANDS,
          "--period", "2020-01-01/2020-12-31", "--out", str(out)])
    data, tags, _ = _read(out)
    assert (data[0, :, :20] == 3000).all() and (data[0, :, 20:] == 1000).all()
    assert (data[-1] == 1).all() and tags["CACAOMAP_MASK_SOURCE"] == "file"
    with pytest.raises(SystemExit, match="carry no SCL"):
        main(["imagery", "composite", "--geotiff", *map(str, scenes),
              "--period", "2020-01-01/2020-12-31", "--out", str(tmp_path / "x.tif")])
    with pytest.raises(SystemExit, match="one per image"):
        main(["imagery", "composite", "--geotiff", *map(str, scenes),
              "--mask-files", str(masks[0]),
              "--period", "2020-01-01/2020-12-31", "--out", str(tmp_path / "x.tif")])


def test_the_composite_command_on_a_folder_of_real_safe_products(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--safe FOLDER`` takes every product in it; the period picks the 2019 one."""
    from cacaomap.main import main

    out = tmp_path / "c.tif"
    main(["imagery", "composite", "--safe", str(SAFE_ROOT), "--period", "2019-01-01/2019-12-31",
          "--bands", json.dumps(["B02", "B03", "B04", "B08", "B11", "B12"]),
          "--cloud-buffer", "0", "--out", str(out)])
    assert "1 acquisitions (median, mask scl)" in capsys.readouterr().out
    data, tags, _ = _read(out)
    assert json.loads(tags["CACAOMAP_ITEMS"])[0].startswith("S2A_MSIL2A_20190212")
    # The product's clear SCL classes (2, 4, 5, 6, 7: 166 of 10,000 pixels) have a count.
    assert (data[-1] > 0).sum() == 166
    with pytest.raises(SystemExit, match="best-pixel composite needs bands B04 and B08"):
        main(["imagery", "composite", "--safe", str(SAFE_ROOT), "--period", "2019-01-01/2019-12-31",
              "--bands", json.dumps(["B02", "B03"]), "--method", "best",
              "--out", str(tmp_path / "x.tif")])
    with pytest.raises(SystemExit, match="no SAFE product in"):
        main(["imagery", "composite", "--safe", str(tmp_path), "--period", "2019-01-01/2019-12-31",
              "--out", str(tmp_path / "x.tif")])
