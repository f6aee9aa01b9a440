"""A baseline store written straight from class maps (no imagery, no model).

For tests and benchmarks of the plot checks: the layout, ``store.json`` and COGs are
those of a built store (:mod:`serving.store.reader`), but each cell's class maps (and
confidence) come from a function given here instead of composites and a model.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from serving.baseline.change import Thresholds
from serving.classes import load_classes
from serving.files import staged, write_bytes_atomic
from serving.inference.confidence import CONFIDENCE_NODATA
from serving.store.grid import Cell
from serving.store.reader import PERIODS, STORE_FILE, STORE_VERSION, cell_dir

#: (cell, period) -> (class codes, stored confidence or None), each (size, size) uint8.
CellMaps = Callable[[Cell, str], tuple[NDArray[np.uint8], NDArray[np.uint8] | None]]


def write_cog(path: Path, data: NDArray[np.uint8], cell: Cell, nodata: int) -> Path:
    """One uint8 band on the cell's grid as a COG (staged, DEFLATE, 512 px blocks)."""
    profile = {"driver": "GTiff", "width": cell.size, "height": cell.size, "count": 1,
               "dtype": "uint8", "crs": cell.utm.crs, "transform": cell.transform,
               "nodata": nodata, "tiled": True, "blockxsize": 512, "blockysize": 512}
    with staged(path, suffix=".tif") as tmp, rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, tmp, driver="COG", compress="DEFLATE", blocksize=512,
                                 overview_resampling="NEAREST")
    return path


def write_class_store(root: Path, cells: list[Cell], maps: CellMaps,
                      region: BaseGeometry, periods: dict[str, str] | None = None,
                      min_forest_ha: float = 0.5) -> Path:
    """Write a store whose cells hold the class maps ``maps`` gives."""
    periods = periods or {"reference": "2020-01-01/2020-12-31",
                          "current": "2024-01-01/2024-12-31"}
    for cell in cells:
        for period in PERIODS:
            classes, confidence = maps(cell, period)
            folder = cell_dir(root, cell.id, period)
            write_cog(folder / "classes.tif", classes, cell, 0)
            if confidence is not None:
                write_cog(folder / "confidence.tif", confidence, cell, CONFIDENCE_NODATA)
    meta = {
        "cacaomap_store": STORE_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "region": mapping(region), "periods": periods, "cutoff": "2020-12-31",
        "reference_ends_by_cutoff": periods["reference"].split("/")[-1] <= "2020-12-31",
        "model": {"name": "synthetic-maps", "version": "v0", "onnx_sha256": "",
                  "mlflow_run_id": None},
        "classes": load_classes().to_dict(),
        "thresholds": Thresholds().__dict__, "min_forest_ha": min_forest_ha,
        "grid": {"resolution": cells[0].resolution,
                 "cell_size_m": cells[0].size * cells[0].resolution,
                 "kind": "UTM zone grid"},
        "cells": [c.to_dict() for c in cells],
    }
    write_bytes_atomic(root / STORE_FILE, json.dumps(meta, indent=1).encode())
    return root
