"""Which sensor each pixel of a class map was classified from: a small sidecar COG.

Beside a class map of a stacked optical + radar composite, ``sensors.tif`` (uint8, same
grid) records per pixel:

- ``1`` optical: a clear optical observation (radar bands read beside it, if any);
- ``2`` radar alone: no clear optical observation, classified from Sentinel-1;
- ``0`` not classified (neither sensor saw it; no data in the class map).

It is made from the composite's own counts (``clear_count``, ``radar_count``) and the
class map, block by block, so memory is bounded by the block. The store writes one per
cell and period (asset ``sensors`` of its STAC items); ``cacaomap maps classify`` writes
``x.sensors.tif`` beside ``x.classes.tif`` when the scene is a stacked composite.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.windows import Window

from serving.files import staged
from serving.imagery.composite import COUNT_BAND
from serving.radar.statistics import RADAR_COUNT_BAND

#: Codes of the sensors map, and their names (in its tags and colour table).
SENSOR_CODES = {0: "not classified", 1: "optical", 2: "radar alone"}
_COLOURS = {0: (0, 0, 0, 0), 1: (46, 125, 50, 255), 2: (123, 31, 162, 255)}
BLOCK = 1024


def sensors_path(classes: str | Path) -> Path:
    """``x.classes.tif`` -> ``x.sensors.tif``; ``classes.tif`` -> ``sensors.tif``."""
    path = Path(classes)
    stem = path.name.removesuffix(".tif").removesuffix(".classes")
    return path.with_name("sensors.tif" if stem == "classes" else f"{stem}.sensors.tif")


def count_band_indexes(descriptions: Sequence[str | None]) -> tuple[int, int] | None:
    """1-based indexes of (clear_count, radar_count) among a raster's band descriptions.

    None unless it is a stacked optical + radar composite (it carries both counts).
    """
    names = list(descriptions)
    if COUNT_BAND in names and RADAR_COUNT_BAND in names:
        return names.index(COUNT_BAND) + 1, names.index(RADAR_COUNT_BAND) + 1
    return None


def has_radar(composite: rasterio.DatasetReader) -> bool:
    """Whether a raster is a stacked composite (it carries both counts)."""
    return count_band_indexes(composite.descriptions or ()) is not None


def sensors_block(clear_count: NDArray[np.integer], radar_count: NDArray[np.integer],
                  classes: NDArray[np.integer], nodata: int = 0) -> NDArray[np.uint8]:
    """One block of the sensors map from the composite's counts and the class codes."""
    classified = classes != nodata
    out = np.zeros(classes.shape, np.uint8)
    out[classified & (clear_count > 0)] = 1
    out[classified & (clear_count == 0) & (radar_count > 0)] = 2
    return out


def write_sensors_map(composite: str | Path, classes: str | Path, out: str | Path
                      ) -> dict[str, float]:
    """Write the sensors map of a class map and return the share of each code.

    Raises:
        ValueError: The composite carries no radar count, or the grids differ.
    """
    with rasterio.open(composite) as comp, rasterio.open(classes) as cls:
        bands = count_band_indexes(comp.descriptions or ())
        if bands is None:
            raise ValueError(f"{composite} is not a stacked optical + radar composite")
        if (comp.crs, comp.transform, comp.shape) != (cls.crs, cls.transform, cls.shape):
            raise ValueError(f"{classes} is not on the grid of {composite}")
        nodata = int(cls.nodata or 0)
        counts = dict.fromkeys(SENSOR_CODES, 0)
        profile = {"driver": "GTiff", "width": comp.width, "height": comp.height,
                   "count": 1, "dtype": "uint8", "crs": comp.crs,
                   "transform": comp.transform, "nodata": 0, "tiled": True,
                   "blockxsize": 256, "blockysize": 256, "compress": "DEFLATE"}
        out = Path(out)
        with staged(out, suffix=".cog.tif") as cog, \
                tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
            blocks = Path(tmp) / "blocks.tif"
            with rasterio.open(blocks, "w", **profile) as dst:
                dst.update_tags(SENSOR_CODES=", ".join(f"{k} = {v}" for k, v in
                                                       SENSOR_CODES.items()))
                dst.set_band_description(1, "sensors")
                dst.write_colormap(1, _COLOURS)
                for row in range(0, comp.height, BLOCK):
                    for col in range(0, comp.width, BLOCK):
                        window = Window(col, row, min(BLOCK, comp.width - col),
                                        min(BLOCK, comp.height - row))
                        clear, radar = comp.read(list(bands), window=window)
                        block = sensors_block(clear, radar, cls.read(1, window=window),
                                              nodata)
                        dst.write(block, 1, window=window)
                        for code in SENSOR_CODES:
                            counts[code] += int((block == code).sum())
            rasterio.shutil.copy(blocks, cog, driver="COG", compress="DEFLATE",
                                 overview_resampling="NEAREST")
    total = max(1, sum(counts.values()))
    return {SENSOR_CODES[k]: v / total for k, v in counts.items()}


def sensor_shares(scene: str | Path, classes: str | Path) -> dict[str, float] | None:
    """Shares of a class map's pixels by sensor; None unless the scene is stacked.

    The sensors map is written beside ``classes`` (``sensors_path``).
    """
    with rasterio.open(scene) as src:
        if not has_radar(src):
            return None
    return write_sensors_map(scene, classes, sensors_path(classes))
