"""Imagery opens raster files, and remote assets only when asked: GDAL is not a fetcher.

Before, a catalogue's or a SAFE product's asset hrefs went to GDAL as they were:
``/vsicurl/`` to any address, a VRT reading any local file it points at.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.imagery.hrefs import HrefError, check_href
from serving.imagery.sources import items_from_file, load_items


@pytest.mark.parametrize(("href", "remote", "why"), [
    ("/vsicurl/http://127.0.0.1:9/x.tif", True, "virtual file paths"),
    ("/data/scene.vrt", False, "a VRT is never opened"),
    ("/etc/passwd", False, "not a raster file"),
    ("https://example.org/B04.tif", False, "read remote assets only when asked"),
    ("ftp://example.org/B04.tif", True, "not ftp://"),
])
def test_hrefs_imagery_does_not_open(href: str, remote: bool, why: str) -> None:
    with pytest.raises(HrefError, match=why):
        check_href(href, remote)


@pytest.mark.parametrize(("href", "remote"), [
    ("/data/S2/B04.tif", False), ("file:///data/S2/T18_B04_10m.jp2", False),
    ("https://sentinel-cogs.s3.amazonaws.com/B04.tif", True), ("s3://bucket/B04.tif", True),
])
def test_hrefs_imagery_opens(href: str, remote: bool) -> None:
    assert check_href(href, remote) == href


def test_an_item_pointing_gdal_elsewhere_is_refused_before_gdal_opens_it(
        tmp_path: Path) -> None:
    vrt = tmp_path / "evil.vrt"
    vrt.write_text('<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand '
                   'dataType="Byte" band="1"><SimpleSource><SourceFilename>/etc/passwd'
                   "</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>")
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "evil",
            "bbox": [-76, -8, -75.9, -7.9], "links": [],
            "geometry": {"type": "Point", "coordinates": [-76, -8]},
            "properties": {"datetime": "2024-06-01T00:00:00Z"},
            "assets": {b: {"href": str(vrt)} for b in ("B04", "B08", "SCL")}}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    with pytest.raises(HrefError, match=r"item evil, asset B04: .*a VRT is never opened"):
        load_items(items_from_file(path), ["B04", "B08"])
