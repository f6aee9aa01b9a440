"""Which sensor saw each pixel of a plot: optical at both dates, or radar alone at one.

A store built with radar (``cacaomap store build --radar``) keeps, in each cell's
composite, the count of clear optical observations (``clear_count``) and of radar
acquisitions (``radar_count``). A pixel classified at a date with no clear optical
observation was classified from radar alone; the plot record says how much of the
plot that is, so a verdict resting on radar is never mistaken for one resting on
cloud-free optical imagery.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window

from serving.radar.sensors_map import count_band_indexes
from serving.store.reader import PERIODS, ZoneMaps, ZoneReader


@lru_cache(maxsize=256)
def _count_bands(path: Path) -> tuple[int, int] | None:
    """1-based indexes of (clear_count, radar_count) in a composite, None without radar."""
    with rasterio.open(path) as src:
        return count_band_indexes(src.descriptions or ())


def count_bands(zone: ZoneMaps) -> tuple[int, int] | None:
    """The zone's composites' (clear_count, radar_count) bands, None if any lacks radar."""
    found = set()
    for cell in zone.cells:
        if cell.failed:
            continue
        for period in PERIODS:
            path = cell.files.get(("composite", period))
            if path is None:
                return None
            found.add(_count_bands(path))
    return found.pop() if len(found) == 1 and None not in found else None


def sensor_masks(zone: ZoneMaps, reader: ZoneReader, window: Window
                 ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]] | None:
    """(seen optically at both dates, seen by radar alone at a date) over ``window``.

    None when the zone's composites carry no radar count (an optical-only store).
    """
    bands = count_bands(zone)
    if bands is None:
        return None
    optical_both = np.ones((int(window.height), int(window.width)), bool)
    radar_only = np.zeros_like(optical_both)
    for period in PERIODS:
        counts, _ = reader.read("composite", period, window, list(bands))
        optical = counts[0] > 0
        optical_both &= optical
        radar_only |= (counts[1] > 0) & ~optical
    return optical_both, radar_only
