"""``cacaomap imagery composite --search`` against a real STAC API (stac-fastapi-pgstac).

Fourteen Sentinel-2 L2A items of 2020 with COG band files written here (``file://``
hrefs), half at processing baseline 02.14 and half at 04.00 (offset -1000, said by
``raster:bands`` or only by the baseline), ``eo:cloud_cover`` from 0 to 91 %, one of
them with a band file gone, are loaded into pgstac; the search pages through them
(the server answers 10 a page), filters by bbox, datetime, collection and cloud cover,
and the composite equals, byte for byte, the one made from the same items on disk.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pystac
import pytest

from serving.http.local_server import free_port
from serving.imagery.sources import ImageryError, search_items
from tests.serving.imagery.conftest import BANDS, surface, write_item
from tests.stac_api import PAGE_SIZE, StacApi

pytestmark = [pytest.mark.server, pytest.mark.slow]
COLLECTION = "sentinel-2-l2a"
ITEMS = 14
#: The item whose B04 file is deleted after loading (skipped and listed).
BROKEN = "S2_05"
PERIOD = "2020-01-01/2020-12-31"
CLEAR, CLOUD = 4, 9


def _collection(items: list[pystac.Item]) -> dict[str, Any]:
    west = min(i.bbox[0] for i in items)
    south = min(i.bbox[1] for i in items)
    east = max(i.bbox[2] for i in items)
    north = max(i.bbox[3] for i in items)
    return {"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
            "description": "Sentinel-2 L2A items written by the test", "license": "proprietary",
            "links": [], "extent": {
                "spatial": {"bbox": [[west, south, east, north]]},
                "temporal": {"interval": [["2020-01-01T00:00:00Z", "2020-12-31T23:59:59Z"]]}}}


@pytest.fixture(scope="module")
def catalogue(stac_api: StacApi, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[StacApi, list[pystac.Item], Path]:
    """The items loaded into the API, and the same items as an ItemCollection on disk."""
    work = tmp_path_factory.mktemp("stac-items")
    items = []
    for k in range(ITEMS):
        when = dt.datetime(2020, 1, 10, 15, tzinfo=dt.UTC) + dt.timedelta(days=25 * k)
        scl = np.full((48, 48), CLEAR, np.uint8)
        scl[(3 * k) % 40:(3 * k) % 40 + 8, 10:30] = CLOUD
        new = k % 2 == 1
        item = write_item(work / f"i{k}", f"S2_{k:02d}", when, surface(k, 48), scl,
                          baseline="04.00" if new else "02.14",
                          offset=-1000.0 if new else 0.0, raster_offset=k % 4 != 3)
        item.properties["eo:cloud_cover"] = float(7 * k)
        item.collection_id = COLLECTION
        for asset in item.assets.values():
            asset.href = Path(asset.href).resolve().as_uri()
        items.append(item)
    stac_api.load(_collection(items), [i.to_dict(include_self_link=False) for i in items])
    broken = next(i for i in items if i.id == BROKEN)
    Path(broken.assets["B04"].href.removeprefix("file://")).unlink()
    on_disk = work / "items.json"
    pystac.ItemCollection(items).save_object(dest_href=str(on_disk))
    return stac_api, items, on_disk


def _bbox(items: list[pystac.Item]) -> list[float]:
    return list(_collection(items)["extent"]["spatial"]["bbox"][0])


def test_search_pages_and_filters(catalogue: tuple[StacApi, list[pystac.Item], Path]
                                  ) -> None:
    api, items, _ = catalogue
    bbox = _bbox(items)
    first_page = httpx.post(f"{api.url}/search", json={
        "collections": [COLLECTION], "bbox": bbox}, timeout=30).json()
    assert len(first_page["features"]) == PAGE_SIZE  # the server pages ...
    assert any(link["rel"] == "next" for link in first_page["links"])
    found = search_items(api.url, bbox, PERIOD, COLLECTION)  # ... and all are read
    assert sorted(i.id for i in found) == sorted(i.id for i in items)
    assert all(i.assets["B02"].href.startswith("file:///") for i in found)
    cloudy = search_items(api.url, bbox, PERIOD, COLLECTION, max_cloud=50)
    assert sorted(i.id for i in cloudy) == [f"S2_{k:02d}" for k in range(ITEMS) if 7 * k < 50]
    spring = search_items(api.url, bbox, "2020-01-01/2020-03-31", COLLECTION)
    assert sorted(i.id for i in spring) == ["S2_00", "S2_01", "S2_02", "S2_03"]
    assert search_items(api.url, [10.0, 10.0, 10.1, 10.1], PERIOD, COLLECTION) == []
    assert search_items(api.url, bbox, PERIOD, "landsat-c2-l2") == []
    with pytest.raises(ImageryError, match="matched more than 5 items"):
        search_items(api.url, bbox, PERIOD, COLLECTION, max_items=5)


def test_composite_of_a_search_equals_the_same_items_on_disk(
        catalogue: tuple[StacApi, list[pystac.Item], Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cacaomap.main import main

    api, items, on_disk = catalogue
    common = ["--period", PERIOD, "--bands", *BANDS, "--cloud-buffer", "0"]
    main(["imagery", "composite", "--search", api.url, "--bbox", *map(str, _bbox(items)),
          "--collection", COLLECTION, "--out", str(tmp_path / "searched.tif"), *common])
    searched = capsys.readouterr().out
    main(["imagery", "composite", "--stac", str(on_disk), "--out", str(tmp_path / "disk.tif"),
          *common])
    from_disk = capsys.readouterr().out
    assert f"skipped {BROKEN}: B04" in searched and f"skipped {BROKEN}: B04" in from_disk
    assert f"{ITEMS - 1} acquisitions" in searched
    assert (tmp_path / "searched.tif").read_bytes() == (tmp_path / "disk.tif").read_bytes()


def test_an_api_that_does_not_answer(tmp_path: Path) -> None:
    from cacaomap.main import main

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ImageryError, match="cannot search the STAC API"):
        search_items(url, [0, 0, 1, 1], PERIOD, COLLECTION)
    with pytest.raises(SystemExit,
                       match="cacaomap imagery composite: cannot search the STAC API at"):
        main(["imagery", "composite", "--search", url, "--bbox", "0", "0", "1", "1", "--period",
              PERIOD,
              "--out", str(tmp_path / "x.tif")])
    assert not (tmp_path / "x.tif").exists()
