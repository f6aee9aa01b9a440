"""Radar from a real STAC API (stac-fastapi-pgstac): ``--radar-search`` on both commands.

The synthetic region's Sentinel-1 acquisitions are written the way Planetary
Computer's ``sentinel-1-rtc`` serves them: one float32 COG per polarisation (assets
``vv``, ``vh``), nodata -32768 said only by the asset's ``raster:bands``, items that say
``sar:product_type: GRD`` (the product the RTC was made from) with an ``_rtc`` id. They
are loaded into pgstac (the server answers 10 a page), searched per period over the
area, and stacked: the radar bands equal those stacked from the files on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from serving.radar.statistics import RADAR_BANDS, RADAR_COUNT_BAND
from tests.stac_api import StacApi
from tests.store_fixtures import PERIODS

pytestmark = [pytest.mark.server, pytest.mark.slow]
COLLECTION = "sentinel-1-rtc"
NODATA = -32768.0


def _item(path: Path, work: Path) -> dict[str, Any]:
    """One acquisition as a Planetary Computer ``sentinel-1-rtc`` item."""
    date = path.name.split("_")[3][:8]
    item_id = f"S1X_IW_GRDH_1SDV_{date}T101500_rtc"
    assets = {}
    with rasterio.open(path) as src:
        bbox = list(transform_bounds(src.crs, "EPSG:4326", *src.bounds))
        for band, pol in ((1, "vv"), (2, "vh")):
            data = src.read(band)
            cog = work / f"{item_id}_{pol}.tif"
            with rasterio.open(cog, "w", **(src.profile | {"count": 1, "predictor": 2})) as dst:
                dst.write(np.where(data > 0, data, NODATA).astype(np.float32), 1)
            assets[pol] = {"href": cog.resolve().as_uri(), "roles": ["data"],
                           "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "raster:bands": [{"nodata": NODATA, "data_type": "float32"}]}
    west, south, east, north = bbox
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": COLLECTION,
        "bbox": bbox, "geometry": {"type": "Polygon", "coordinates": [[
            [west, south], [east, south], [east, north], [west, north], [west, south]]]},
        "properties": {"datetime": f"{date[:4]}-{date[4:6]}-{date[6:]}T10:15:00Z",
                       "sar:product_type": "GRD", "sar:polarizations": ["VV", "VH"],
                       "platform": "SENTINEL-1X", "constellation": "Sentinel-1"},
        "links": [], "assets": assets}


@pytest.fixture(scope="module")
def radar_api(stac_api: StacApi, region_data: Path,
              tmp_path_factory: pytest.TempPathFactory) -> StacApi:
    work = tmp_path_factory.mktemp("s1-rtc")
    items = [_item(p, work) for p in sorted((region_data / "radar").glob("*.tif"))]
    west = min(i["bbox"][0] for i in items)
    south = min(i["bbox"][1] for i in items)
    east = max(i["bbox"][2] for i in items)
    north = max(i["bbox"][3] for i in items)
    stac_api.load({"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
                   "description": "Sentinel-1 RTC items written by the test",
                   "license": "CC-BY-4.0", "links": [], "extent": {
                       "spatial": {"bbox": [[west, south, east, north]]},
                       "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}}, items)
    return stac_api


def _radar(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as src:
        names = list(src.descriptions)
        keep = [names.index(b) + 1 for b in (*RADAR_BANDS, RADAR_COUNT_BAND)]
        return src.read(keep), src.tags()


def test_stack_radar_from_a_search_equals_the_files_on_disk(
        radar_api: StacApi, region_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cacaomap.main import main

    period = PERIODS["current"]
    optical = tmp_path / "optical.tif"
    main(["imagery", "composite", "--stac", str(region_data / "stac" / "catalog.json"),
          "--period", period, "--out", str(optical)])
    files = sorted((region_data / "radar").glob("*2024*.tif"))
    main(["imagery", "stack-radar", "--optical", str(optical), "--radar", *map(str, files),
          "--out", str(tmp_path / "disk.tif")])
    main(["imagery", "stack-radar", "--optical", str(optical), "--period", period,
          "--radar-search", radar_api.url, "--out", str(tmp_path / "searched.tif")])
    out = capsys.readouterr().out
    assert f"{len(files)} radar acquisitions ({len(files)} in linear)" in out.splitlines()[-1]
    searched, tags = _radar(tmp_path / "searched.tif")
    disk, _ = _radar(tmp_path / "disk.tif")
    np.testing.assert_array_equal(searched, disk)
    named = json.loads(tags["RADAR_ITEMS"])
    assert len(named) == len(files) and all(n.endswith("_rtc") for n in named)
    assert all("2024" in n for n in named)  # the period's items only


def test_store_build_with_a_radar_search_stacks_each_periods_items(
        radar_api: StacApi, region_data: Path, store_model: Path, tmp_path: Path) -> None:
    from cacaomap.main import main
    from tests.model_factory import write_local_model
    from training.synthetic.spectra import S2_BANDS

    model = write_local_model(tmp_path / "model", bands=[*S2_BANDS, *RADAR_BANDS])
    main(["store", "build", "--region", str(region_data / "region.geojson"),
          "--stac", str(region_data / "stac" / "catalog.json"),
          "--reference-period", PERIODS["reference"], "--current-period",
          PERIODS["current"], "--out", str(tmp_path / "store"), "--model", str(model),
          "--cell-size-m", "1280", "--radar-search", radar_api.url])
    markers = sorted((tmp_path / "store").glob("cells/*/*/*/done.json"))
    assert markers
    for marker in markers:
        done = json.loads(marker.read_text())
        year = done["period"][:4]
        assert done["radar_items"] and all(
            n.endswith("_rtc") and year in n for n in done["radar_items"])


def test_a_radar_search_that_cannot_be_answered_is_one_line(tmp_path: Path) -> None:
    from cacaomap.main import main
    from serving.http.local_server import free_port
    from tests.serving.radar.test_speckle import tiny_optical

    optical = tiny_optical(tmp_path / "o.tif")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit, match="cannot search the STAC API"):
        main(["imagery", "stack-radar", "--optical", str(optical), "--period",
              "2024-01-01/2024-12-31", "--radar-search", url, "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="needs --period"):
        main(["imagery", "stack-radar", "--optical", str(optical), "--radar-search", url,
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="not both"):
        main(["imagery", "stack-radar", "--optical", str(optical), "--radar-search", url,
              "--radar", str(optical), "--period", "2024-01-01/2024-12-31",
              "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
