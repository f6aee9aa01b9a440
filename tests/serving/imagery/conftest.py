"""Generated Sentinel-2 L2A items: band files on disk and STAC items describing them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from serving.imagery.safe import item_from_files

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
DATA = Path(__file__).resolve().parents[2] / "data"
SAFE_ROOT = DATA / "s2l2a"


def write_item(folder: Path, item_id: str, when: dt.datetime, dn: np.ndarray,
               scl: np.ndarray | None, *, baseline: str = "02.14", offset: float = 0.0,
               raster_offset: bool = True, crs: str = "EPSG:32718",
               origin: tuple[float, float] = (333_000.0, 9_097_000.0),
               pixel: float = 10.0) -> Any:
    """Band files of ``dn`` (bands, H, W; BANDS order) and SCL, as a STAC item.

    ``offset`` (DN, e.g. -1000) is what the files carry: the written DN are ``dn -
    offset`` where ``dn`` > 0. ``raster_offset=False`` leaves it out of raster:bands so
    that only ``s2:processing_baseline`` tells it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    height, width = dn.shape[1:]
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "crs": crs, "transform": from_origin(*origin, pixel, pixel), "nodata": 0}
    files = {}
    for band, plane in zip(BANDS, dn, strict=True):
        written = np.where(plane > 0, plane.astype(np.int64) - int(offset), 0)
        path = folder / f"{item_id}_{band}.tif"
        with rasterio.open(path, "w", dtype="uint16", **profile) as dst:
            dst.write(written.astype(np.uint16), 1)
        files[band] = path
    if scl is not None:
        path = folder / f"{item_id}_SCL.tif"
        with rasterio.open(path, "w", dtype="uint8", **profile) as dst:
            dst.write(scl.astype(np.uint8), 1)
        files["SCL"] = path
    item = item_from_files(item_id, when, files,
                           properties={"platform": "sentinel-2b",
                                       "s2:processing_baseline": baseline},
                           offsets={b: offset for b in BANDS} if raster_offset else None)
    if not raster_offset:
        for key, asset in item.assets.items():
            if key != "SCL":
                asset.extra_fields["raster:bands"][0].pop("offset")
    return item


def surface(seed: int, size: int = 64) -> np.ndarray:
    """A plausible surface: (6, size, size) DN between 200 and 4000."""
    rng = np.random.default_rng(seed)
    return rng.integers(200, 4000, (len(BANDS), size, size)).astype(np.uint16)


@pytest.fixture
def when() -> dt.datetime:
    """A date in the reference year."""
    return dt.datetime(2020, 6, 1, 15, tzinfo=dt.UTC)
