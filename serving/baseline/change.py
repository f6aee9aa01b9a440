"""The deforestation baseline: forest at the reference date and what became of it.

Inputs are two class maps (reference date, current date) and optional zones (farm plots,
districts). The current map is aligned to the reference grid (nearest resampling) when
the grids differ. Every area is a ground area (``serving.areas``); zone statistics weight
partial pixels at zone edges by their exact coverage (exactextract). Nodata at either
date is never counted as "no loss": it lowers a zone's valid fraction instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject

from serving.areas import (
    M2_PER_HA,
    AreaError,
    check_georeferencing,
    check_transform,
    class_hectares,
    pixel_areas,
)
from serving.classes import ClassSchema

FOREST = "forest"
DRIVERS = ("cocoa_agroforestry", "oil_palm", "degraded", "other")


class BaselineError(ValueError):
    """Inputs that cannot give a baseline (no CRS, no forest class, bad zones)."""


@dataclass(frozen=True)
class Thresholds:
    """When a plot's forest loss counts as deforestation, and when data are too few.

    Attributes:
        min_loss_ha: Loss below this many hectares is treated as map noise (0.1 ha =
            10 Sentinel-2 pixels; the FAO forest definition's minimum area is 0.5 ha).
        min_loss_fraction: ... and below this share of the plot's area.
        min_valid_fraction: Plots observed (valid at both dates) over less than this
            share of their area, with no loss detected, are ``insufficient_data``.
    """

    min_loss_ha: float = 0.1
    min_loss_fraction: float = 0.01
    min_valid_fraction: float = 0.8


@dataclass
class ClassMaps:
    """Two aligned class maps on the reference grid with their pixel ground areas."""

    reference: NDArray[np.uint8]
    current: NDArray[np.uint8]
    areas_m2: NDArray[np.float64]
    profile: dict[str, Any]


def load_class_maps(reference: str | Path, current: str | Path) -> ClassMaps:
    """Read both maps; warp the current one onto the reference grid if they differ.

    Raises:
        BaselineError: If a map has no CRS or a rotated transform.
    """
    with rasterio.open(reference) as ref_src, rasterio.open(current) as cur_src:
        for src in (ref_src, cur_src):
            if src.crs is None:
                raise BaselineError(f"{Path(src.name).name} has no CRS: no ground areas")
            check_transform(src.transform)
            try:
                check_georeferencing(src.crs, src.transform, src.height, src.width)
            except AreaError as err:
                raise BaselineError(f"{Path(src.name).name}: {err}") from err
        ref = ref_src.read(1)
        profile = dict(ref_src.profile)
        if (cur_src.crs == ref_src.crs and cur_src.transform == ref_src.transform
                and cur_src.shape == ref_src.shape):
            cur = cur_src.read(1)
        else:
            cur = np.zeros_like(ref)
            reproject(
                rasterio.band(cur_src, 1), cur, dst_transform=ref_src.transform,
                dst_crs=ref_src.crs, resampling=Resampling.nearest,
                src_nodata=cur_src.nodata, dst_nodata=0,
            )
        areas = pixel_areas(ref_src.crs, ref_src.transform, ref_src.height, ref_src.width)
    return ClassMaps(ref, cur, areas, profile)


def transition_hectares(maps: ClassMaps, n_classes: int) -> NDArray[np.float64]:
    """Ground hectares of every reference→current transition (rows: reference)."""
    return class_hectares(transition_codes(maps, n_classes), maps.areas_m2,
                          n_classes * n_classes).reshape(n_classes, n_classes)


def transition_codes(maps: ClassMaps, n_classes: int) -> NDArray[np.int64]:
    """Each pixel's transition as one code: ``reference * n_classes + current``."""
    return maps.reference.astype(np.int64) * n_classes + maps.current


def zone_statistics(
    maps: ClassMaps, zones: Any, schema: ClassSchema, thresholds: Thresholds,
    id_field: str | None = None,
) -> list[dict[str, Any]]:
    """Per-zone forest at reference, loss by driver, valid fraction and verdict.

    Args:
        maps: Aligned class maps.
        zones: A GeoDataFrame of polygons (any CRS; reprojected to the maps' CRS).
        schema: The class schema (must have a ``forest`` class).
        thresholds: Verdict thresholds.
        id_field: Zone attribute used as its id (default: the row number).
    """
    from exactextract import exact_extract

    n = schema.num_classes
    try:
        forest = schema.code_of(FOREST)
    except ValueError as err:
        raise BaselineError("the class schema has no 'forest' class") from err
    zones = zones.to_crs(maps.profile["crs"])
    transition = transition_codes(maps, n).astype(np.uint16)
    profile = maps.profile | {"count": 1, "dtype": "uint16", "nodata": None,
                              "driver": "GTiff"}
    height, width = transition.shape
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(transition, 1)
        with mem.open() as src:
            rows = exact_extract(src, zones, ["cell_id", "coverage", "values"],
                                 output="pandas")
    areas = maps.areas_m2.ravel()
    pixel_ha = float(np.median(maps.areas_m2)) / M2_PER_HA
    out = []
    for i, (cells, coverage, values) in enumerate(
        zip(rows["cell_id"], rows["coverage"], rows["values"], strict=True)
    ):
        cells = np.asarray(cells, np.int64)
        cov = np.asarray(coverage, np.float64)
        vals = np.asarray(values, np.int64)
        ok = (cells >= 0) & (cells < height * width)
        cells, cov, vals = cells[ok], cov[ok], vals[ok]
        ha = cov * areas[cells] / M2_PER_HA
        ref, cur = vals // n, vals % n
        valid = (ref != schema.nodata) & (cur != schema.nodata)
        was_forest = valid & (ref == forest)
        zone_ha = float(ha.sum())
        record: dict[str, Any] = {
            "zone_id": str(zones.iloc[i][id_field]) if id_field else str(i),
            "zone_ha": zone_ha,
            "valid_fraction": float(ha[valid].sum() / zone_ha) if zone_ha else 0.0,
            "forest_ref_ha": float(ha[was_forest].sum()),
            "forest_ref_px": float(cov[was_forest].sum()),
            "stable_forest_ha": float(ha[was_forest & (cur == forest)].sum()),
            "stable_forest_px": float(cov[was_forest & (cur == forest)].sum()),
        }
        loss_ha = 0.0
        for name in DRIVERS:
            code = schema.code_of(name) if name in schema.names else None
            hit = was_forest & (cur == code) if code is not None else np.zeros_like(valid)
            record[f"loss_to_{name}_ha"] = float(ha[hit].sum())
            record[f"loss_to_{name}_px"] = float(cov[hit].sum())
            loss_ha += record[f"loss_to_{name}_ha"]
        record["forest_loss_ha"] = loss_ha
        record["forest_loss_fraction"] = loss_ha / zone_ha if zone_ha else 0.0
        record["verdict"] = verdict(record, thresholds)
        record["pixel_ha"] = pixel_ha
        out.append(record)
    return out


def verdict(record: dict[str, Any], thresholds: Thresholds) -> str:
    """``deforestation_detected`` / ``insufficient_data`` / ``deforestation_free``.

    Observed loss over both thresholds is reported whatever the cloud cover; without
    it, a plot observed over too little of its area cannot be called free.

    Raises:
        BaselineError: A figure is NaN or infinite (comparisons with it would be
            silently false, and a plot would be called free on no evidence).
    """
    figures = ("forest_loss_ha", "forest_loss_fraction", "valid_fraction")
    broken = [k for k in figures if not np.isfinite(record[k])]
    if broken:
        raise BaselineError(f"zone {record.get('zone_id', '?')}: {', '.join(broken)} not "
                            "finite; no verdict is given on such numbers")
    if (record["forest_loss_ha"] >= thresholds.min_loss_ha
            and record["forest_loss_fraction"] >= thresholds.min_loss_fraction):
        return "deforestation_detected"
    if record["valid_fraction"] < thresholds.min_valid_fraction:
        return "insufficient_data"
    return "deforestation_free"


def landscape_summary(maps: ClassMaps, schema: ClassSchema) -> dict[str, Any]:
    """Transition matrix and forest totals for the whole landscape, in hectares."""
    n = schema.num_classes
    matrix = transition_hectares(maps, n)
    forest = schema.code_of(FOREST)
    valid = [c for c in range(n) if c != schema.nodata]
    loss = {name: float(matrix[forest, schema.code_of(name)])
            for name in DRIVERS if name in schema.names}
    return {
        "classes": schema.names,
        "transition_ha": matrix.tolist(),
        "forest_ref_ha": float(matrix[forest, valid].sum()),
        "forest_ref_unobserved_now_ha": float(matrix[forest, schema.nodata]),
        "stable_forest_ha": float(matrix[forest, forest]),
        "forest_loss_by_driver_ha": loss,
        "forest_loss_ha": float(sum(loss.values())),
        "nodata_ha": float(matrix[schema.nodata].sum() + matrix[valid, schema.nodata].sum()),
    }


def thresholds_dict(thresholds: Thresholds) -> dict[str, float]:
    """The thresholds as recorded in a report's lineage."""
    return asdict(thresholds)
