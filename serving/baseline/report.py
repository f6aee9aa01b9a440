"""Baseline reports: the JSON summary, zones as GeoJSON and CSV, and a map picture.

The reference-sample side (drawing points to label, estimating from labelled points)
is :mod:`serving.baseline.sampling`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from serving.baseline.change import (
    ClassMaps,
    Thresholds,
    landscape_summary,
    load_class_maps,
    thresholds_dict,
    zone_statistics,
)
from serving.baseline.sampling import estimate_from_sample
from serving.baseline.zones import DEFAULT_MAX_ZONE_VERTICES, check_overlap, read_zones
from serving.classes import ClassSchema
from serving.files import sha256_file, write_bytes_atomic
from serving.inference.tiles import TileClassifier


def map_lineage(path: str | Path) -> dict[str, Any]:
    """File name, sha256, and the tags a class map carries (model, date)."""
    with rasterio.open(path) as src:
        tags = src.tags()
    keep = {k.lower(): v for k, v in tags.items()
            if k.startswith("CACAOMAP_") or k == "DATE"}
    return {"file": Path(path).name, "sha256": sha256_file(path), **keep}


def as_class_map(path: str | Path, classifier: TileClassifier | None, work_dir: Path
                 ) -> Path:
    """The path itself if it is a class map; a scene is classified into ``work_dir``.

    Raises:
        InputError: A scene was given but there is no model to classify it.
    """
    from serving.inference.scene import class_map_of, is_class_map
    from serving.inference.scene_checks import check_class_map

    path = Path(path)
    with rasterio.open(path) as src:
        if is_class_map(src):
            check_class_map(src, path.stem)
            return path
        out = work_dir / f"classes_{path.stem}.tif"
        class_map_of(src, path, out, classifier, path.stem)
    return out


def build_report(
    reference: str | Path, current: str | Path, schema: ClassSchema,
    zones_path: str | Path | None = None, thresholds: Thresholds | None = None,
    reference_sample: str | Path | None = None, lineage: dict[str, Any] | None = None,
    id_field: str | None = None, zones_geojson_only: bool = False,
    max_zone_vertices: int = DEFAULT_MAX_ZONE_VERTICES,
) -> tuple[dict[str, Any], ClassMaps, Any]:
    """Compute the landscape summary, zone statistics and (optionally) estimates.

    ``zones_geojson_only`` parses the zones as GeoJSON text without GDAL (uploads);
    zones with more than ``max_zone_vertices`` vertices in all are refused.
    """
    thresholds = thresholds or Thresholds()
    maps = load_class_maps(reference, current)
    report: dict[str, Any] = {
        "landscape": landscape_summary(maps, schema),
        "lineage": {
            "reference": map_lineage(reference),
            "current": map_lineage(current),
            "thresholds": thresholds_dict(thresholds),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(lineage or {}),
        },
    }
    zones = None
    if zones_path is not None:
        zones = read_zones(zones_path, geojson_only=zones_geojson_only,
                           max_vertices=max_zone_vertices)
        profile = maps.profile
        check_overlap(zones, profile["crs"], profile["transform"], profile["height"],
                      profile["width"])
        if id_field is None and "plot_id" in zones.columns:
            id_field = "plot_id"
        report["zones"] = zone_statistics(maps, zones, schema, thresholds, id_field)
        report["lineage"]["zones"] = {"file": Path(zones_path).name,
                                      "sha256": sha256_file(zones_path)}
        counts: dict[str, int] = {}
        for z in report["zones"]:
            counts[z["verdict"]] = counts.get(z["verdict"], 0) + 1
        report["verdicts"] = counts
    if reference_sample is not None:
        report["estimates"] = estimate_from_sample(maps, schema, reference_sample)
    return report, maps, zones


def write_report(
    report: dict[str, Any], maps: ClassMaps, zones: Any, schema: ClassSchema,
    out_dir: str | Path,
) -> list[Path]:
    """Write report.json, zones.geojson, zones.csv and map.png into ``out_dir``."""
    out = Path(out_dir)
    written = [out / "report.json"]
    write_bytes_atomic(written[0], json.dumps(report, indent=2).encode())
    if zones is not None and "zones" in report:
        import pandas as pd

        table = pd.DataFrame(report["zones"])
        frame = zones.reset_index(drop=True)[["geometry"]].join(table)
        write_bytes_atomic(out / "zones.geojson", frame.to_crs(4326).to_json().encode())
        write_bytes_atomic(out / "zones.csv", table.to_csv(index=False).encode())
        written += [out / "zones.geojson", out / "zones.csv"]
    png = out / "map.png"
    write_bytes_atomic(png, render_map(maps, zones, report, schema))
    written.append(png)
    return written


def render_map(maps: ClassMaps, zones: Any, report: dict[str, Any], schema: ClassSchema
               ) -> bytes:
    """PNG: reference map, current map, forest loss by driver, plot outlines, legend."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap([c.colour for c in schema.classes])
    forest = schema.code_of("forest")
    loss = np.where(
        (maps.reference == forest) & (maps.current != forest)
        & (maps.current != schema.nodata), maps.current, 0,
    )
    t = maps.profile["transform"]
    h, w = maps.reference.shape
    extent = (t.c, t.c + t.a * w, t.f + t.e * h, t.f)
    fig, axes = plt.subplots(1, 3, figsize=(16, 6))
    titles = ("reference date", "current date", "forest loss by driver")
    for ax, data, title in zip(axes, (maps.reference, maps.current, loss), titles,
                               strict=True):
        ax.imshow(data, cmap=cmap, vmin=0, vmax=schema.num_classes - 1, extent=extent,
                  interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        if zones is not None:
            outline = zones.to_crs(maps.profile["crs"]).boundary
            colours = {"deforestation_detected": "red", "insufficient_data": "orange",
                       "deforestation_free": "cyan"}
            verdicts = [z["verdict"] for z in report.get("zones", [])]
            for geom, v in zip(outline, verdicts, strict=False):
                xs, ys = (geom.geoms[0] if hasattr(geom, "geoms") else geom).xy
                ax.plot(xs, ys, color=colours.get(v, "cyan"), linewidth=0.8)
    handles = [Patch(color=c.colour, label=c.name) for c in schema.classes]
    handles += [Patch(facecolor="none", edgecolor=c, label=f"plot: {v}")
                for v, c in (("deforestation_detected", "red"),
                             ("insufficient_data", "orange"),
                             ("deforestation_free", "cyan"))]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
