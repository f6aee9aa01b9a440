"""Format-faithful reference layers for the synthetic landscape, with real layers' flaws.

Derived from the landscape's true classes at the two dates, in the products' own
encodings and grids (EPSG:4326, as they are distributed), so the plot checks read them
through the shipped specs exactly as they read the real ones:

- ``jrc_gfc2020/``: a JRC GFC2020-style forest map at ~10 m (1 forest). As JRC warns,
  it counts part of the cocoa agroforestry as forest (``cocoa_as_forest`` of the cocoa
  patches).
- ``hansen_gfc/``: Hansen-style ``treecover2000`` and ``lossyear`` at ~30 m. Tree crops
  have tree cover (cocoa under shade 45 %, palm 35 %); some land that is not forest in
  2020 was forest in 2000 and lost in 2005-2019; the loss since the reference date gets
  a year of 2021-2024 per clearing, and a 30 m pixel is lost only where most of it was
  (small clearings are missed, as at Hansen's resolution).
- ``radd/``: RADD-style alerts at ~10 m in the date_conf encoding: each clearing found
  with probability ``radd_detection`` on a date after the cutoff, high or low
  confidence; a few false alerts in standing forest, mostly low confidence.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds
from scipy import ndimage

FOREST, COCOA, PALM = 1, 2, 3
#: Approximate pixel sizes of the products, in degrees near the equator.
STEP_10M, STEP_30M = 0.0001, 0.00027
RADD_EPOCH = dt.date(2014, 12, 31)


def write_reference_layers(out: Path, ref: NDArray[np.uint8], cur: NDArray[np.uint8],
                           crs: str, transform: Any, seed: int,
                           cocoa_as_forest: float = 0.5, radd_detection: float = 0.8
                           ) -> dict[str, Any]:
    """Write the three layers under ``out``; what was put in them, for the truth file."""
    rng = np.random.default_rng(seed + 2020)
    h, w = ref.shape
    bounds = transform_bounds(crs, "EPSG:4326", transform.c, transform.f + transform.e * h,
                              transform.c + transform.a * w, transform.f)
    lost = (ref == FOREST) & (cur != FOREST) & (cur != 0)
    events, n_events = ndimage.label(lost)

    cocoa, n_cocoa = ndimage.label(ref == COCOA)
    as_forest = np.zeros(n_cocoa + 1, bool)
    as_forest[1:] = rng.random(n_cocoa) < cocoa_as_forest
    jrc = ((ref == FOREST) | as_forest[cocoa]).astype(np.uint8)

    cover = np.zeros(ref.shape, np.uint8)
    cover[ref == FOREST] = 85
    cover[ref == COCOA] = 45
    cover[ref == PALM] = 35
    lossyear = np.zeros(ref.shape, np.uint8)
    early = (ref != FOREST) & (ref != 0) & (rng.random(ref.shape) < 0.02)
    early = ndimage.binary_dilation(early, iterations=2) & (ref != FOREST) & (ref != 0)
    cover[early] = 80
    lossyear[early] = rng.integers(5, 20, size=int(early.sum()))
    years = np.zeros(n_events + 1, np.uint8)
    years[1:] = rng.integers(21, 25, size=n_events)
    lossyear[lost] = years[events[lost]]

    radd = np.zeros(ref.shape, np.uint32)
    found = np.zeros(n_events + 1, bool)
    found[1:] = rng.random(n_events) < radd_detection
    first = (dt.date(2021, 1, 15) - RADD_EPOCH).days
    last = (dt.date(2024, 7, 31) - RADD_EPOCH).days
    days = np.zeros(n_events + 1, np.int64)
    days[1:] = rng.integers(first, last, size=n_events)
    confidence = np.where(rng.random(n_events + 1) < 0.75, 3, 2)
    hit = lost & found[events]
    radd[hit] = (confidence[events] * 10000 + days[events])[hit]
    standing = (ref == FOREST) & (cur == FOREST)
    false_alerts = max(1, n_events // 10)
    rows, cols = np.nonzero(standing)
    for k in rng.choice(len(rows), size=min(false_alerts, len(rows)), replace=False):
        r, c, side = rows[k], cols[k], int(rng.integers(3, 7))
        patch = (slice(r, r + side), slice(c, c + side))
        conf = 3 if rng.random() < 0.3 else 2
        radd[patch] = np.where(standing[patch], conf * 10000 + int(rng.integers(first, last)),
                               radd[patch])

    written = {
        "jrc_gfc2020": [_write(out / "jrc_gfc2020" / "JRC_GFC2020_V3_synthetic.tif", jrc,
                               crs, transform, bounds, STEP_10M, Resampling.nearest)],
        "hansen_gfc": [
            _write(out / "hansen_gfc" / "Hansen_GFC-synthetic_treecover2000.tif", cover,
                   crs, transform, bounds, STEP_30M, Resampling.average),
            _write(out / "hansen_gfc" / "Hansen_GFC-synthetic_lossyear.tif",
                   _majority_loss(lossyear, crs, transform, bounds), None, None, bounds,
                   STEP_30M, None)],
        "radd": [_write(out / "radd" / "radd_synthetic.tif", radd, crs, transform, bounds,
                        STEP_10M, Resampling.nearest)],
    }
    return {"layers": {k: [str(p.relative_to(out.parent)) for p in v]
                       for k, v in written.items()},
            "clearings": n_events, "radd_found": int(found[1:].sum()),
            "radd_false_alerts": false_alerts,
            "cocoa_patches_as_forest": int(as_forest.sum()), "cocoa_patches": n_cocoa}


def _grid(bounds: tuple[float, float, float, float], step: float
          ) -> tuple[Any, int, int]:
    west, south, east, north = bounds
    width, height = int(np.ceil((east - west) / step)), int(np.ceil((north - south) / step))
    return from_origin(west, north, step, step), width, height


def _majority_loss(lossyear: NDArray[np.uint8], crs: str, transform: Any,
                   bounds: tuple[float, float, float, float]) -> NDArray[np.uint8]:
    """Loss year at ~30 m: a pixel is lost where most of it was lost (else 0)."""
    target, width, height = _grid(bounds, STEP_30M)
    share = np.zeros((height, width), np.float32)
    reproject((lossyear > 0).astype(np.float32), share, src_transform=transform,
              src_crs=crs, dst_transform=target, dst_crs="EPSG:4326",
              resampling=Resampling.average)
    year = np.zeros((height, width), np.uint8)
    reproject(lossyear, year, src_transform=transform, src_crs=crs, dst_transform=target,
              dst_crs="EPSG:4326", resampling=Resampling.max)
    return np.where(share >= 0.5, year, 0).astype(np.uint8)


def _write(path: Path, data: NDArray[Any], crs: str | None, transform: Any,
           bounds: tuple[float, float, float, float], step: float,
           resampling: Resampling | None) -> Path:
    """``data`` (on the landscape's grid, or already on the target grid) as a GeoTIFF."""
    target, width, height = _grid(bounds, step)
    if resampling is not None:
        out = np.zeros((height, width), data.dtype)
        reproject(data, out, src_transform=transform, src_crs=crs, dst_transform=target,
                  dst_crs="EPSG:4326", resampling=resampling)
    else:
        out = data
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype=out.dtype, crs="EPSG:4326", transform=target, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(out, 1)
    return path
