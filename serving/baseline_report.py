"""Baseline reports: the JSON summary, zones as GeoJSON and CSV, and a map picture.

Also the reference-sample side: drawing a stratified random sample of points for
labelling, and turning a labelled sample into accuracy and area estimates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray

from serving.accuracy import sample_sizes, stratified_estimate
from serving.baseline import (
    ClassMaps,
    Thresholds,
    landscape_summary,
    load_class_maps,
    thresholds_dict,
    zone_statistics,
)
from serving.classes import ClassSchema
from serving.contract import sha256_file
from serving.zones import check_overlap, read_zones


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file and a rename (no partial files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def map_lineage(path: str | Path) -> dict[str, Any]:
    """File name, sha256, and the tags a class map carries (model, date)."""
    with rasterio.open(path) as src:
        tags = src.tags()
    keep = {k.lower(): v for k, v in tags.items()
            if k.startswith("CACAOMAP_") or k == "DATE"}
    return {"file": Path(path).name, "sha256": sha256_file(path), **keep}


def as_class_map(path: str | Path, classifier: Any | None, work_dir: Path) -> Path:
    """The path itself if it is a class map; a scene is classified first.

    Raises:
        ValueError: A scene was given but there is no model to classify it.
    """
    from serving.scene import classify_file, is_class_map

    with rasterio.open(path) as src:
        if is_class_map(src):
            return Path(path)
    if classifier is None:
        raise ValueError(f"{Path(path).name} is a scene, not a class map: give a model")

    out = work_dir / f"classes_{Path(path).stem}.tif"
    classify_file(path, out, classifier)
    return out


def build_report(
    reference: str | Path, current: str | Path, schema: ClassSchema,
    zones_path: str | Path | None = None, thresholds: Thresholds | None = None,
    reference_sample: str | Path | None = None, lineage: dict[str, Any] | None = None,
    id_field: str | None = None, zones_geojson_only: bool = False,
) -> tuple[dict[str, Any], ClassMaps, Any]:
    """Compute the landscape summary, zone statistics and (optionally) estimates.

    ``zones_geojson_only`` parses the zones as GeoJSON text without GDAL (uploads).
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
        zones = read_zones(zones_path, geojson_only=zones_geojson_only)
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
    _atomic_write(written[0], json.dumps(report, indent=2).encode())
    if zones is not None and "zones" in report:
        import pandas as pd

        table = pd.DataFrame(report["zones"])
        frame = zones.reset_index(drop=True)[["geometry"]].join(table)
        _atomic_write(out / "zones.geojson", frame.to_crs(4326).to_json().encode())
        _atomic_write(out / "zones.csv", table.to_csv(index=False).encode())
        written += [out / "zones.geojson", out / "zones.csv"]
    png = out / "map.png"
    _atomic_write(png, render_map(maps, zones, report, schema))
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


def mapped_hectares(maps: ClassMaps, schema: ClassSchema) -> NDArray[np.float64]:
    """Ground hectares per class of the current map."""
    return np.bincount(maps.current.ravel(), weights=maps.areas_m2.ravel(),
                       minlength=schema.num_classes)[: schema.num_classes] / 10_000


def estimate_from_sample(maps: ClassMaps, schema: ClassSchema, sample: str | Path
                         ) -> dict[str, Any]:
    """Olofsson estimates from labelled points.

    Field ``reference``: the class at the current date; the map class at each point is
    its stratum. With a ``reference_before`` field too (the class at the reference
    date), the strata are the map's transitions and the estimates are transition areas
    (``forest->oil_palm`` ...). Points on nodata are left out.
    """
    import geopandas as gpd

    points = gpd.read_file(sample).to_crs(maps.profile["crs"])
    if "reference" not in points.columns:
        raise ValueError(f"{sample}: the sample needs a 'reference' field (class code)")
    rows, cols = rasterio.transform.rowcol(maps.profile["transform"], points.geometry.x,
                                           points.geometry.y)
    rows, cols = np.asarray(rows), np.asarray(cols)
    inside = (rows >= 0) & (rows < maps.current.shape[0]) & (cols >= 0) & (
        cols < maps.current.shape[1])
    n = schema.num_classes
    names = schema.names
    mapped = maps.current[rows[inside], cols[inside]].astype(np.int64)
    truth = points["reference"].to_numpy()[inside].astype(np.int64)
    keep = (mapped != schema.nodata) & (truth != schema.nodata)
    codes = schema.valid_codes
    labels = [names[c] for c in codes]
    area = mapped_hectares(maps, schema)[codes]
    if "reference_before" in points.columns:
        before_map = maps.reference[rows[inside], cols[inside]].astype(np.int64)
        before = points["reference_before"].to_numpy()[inside].astype(np.int64)
        keep &= (before_map != schema.nodata) & (before != schema.nodata)
        mapped, truth = before_map * n + mapped, before * n + truth
        codes = [a * n + b for a in schema.valid_codes for b in schema.valid_codes]
        labels = [f"{names[c // n]}->{names[c % n]}" for c in codes]
        cells = maps.reference.astype(np.int64) * n + maps.current
        area = np.bincount(cells.ravel(), weights=maps.areas_m2.ravel(),
                           minlength=n * n)[codes] / 10_000
    index = {c: i for i, c in enumerate(codes)}
    counts = np.zeros((len(codes), len(codes)))
    for m, r in zip(mapped[keep], truth[keep], strict=True):
        counts[index[int(m)], index[int(r)]] += 1
    # Classes neither mapped nor sampled drop out; a mapped class with area needs samples.
    used = (counts.sum(1) > 0) | (counts.sum(0) > 0) | (area > 0)
    estimate = stratified_estimate(
        counts[np.ix_(used, used)], area[used],
        [label for label, u in zip(labels, used, strict=True) if u],
    )
    return estimate.to_dict() | {"sample_points": int(keep.sum()), "area_unit": "ha"}


def draw_sample(
    class_map: str | Path, out: str | Path, schema: ClassSchema,
    users_accuracy: float = 0.8, target_se_overall: float = 0.01, seed: int = 0,
    reference_map: str | Path | None = None,
) -> Path:
    """A stratified random sample of points for labelling (GeoJSON, EPSG:4326).

    Strata are the classes of ``class_map`` or, with ``reference_map``, the transitions
    reference→current. Sizes per stratum follow Olofsson et al. (2014, section 5.1).
    Each point carries its stratum (``map_class``, and ``map_class_before`` for
    transitions) and empty ``reference`` (and ``reference_before``) fields to fill in.
    """
    import geopandas as gpd
    from shapely.geometry import Point

    with rasterio.open(class_map) as src:
        classes = src.read(1).astype(np.int64)
        transform, crs = src.transform, src.crs
    n = schema.num_classes
    codes = list(schema.valid_codes)
    if reference_map is not None:
        before = load_class_maps(reference_map, class_map).reference.astype(np.int64)
        classes = np.where(before == schema.nodata, schema.nodata, before * n + classes)
        codes = [a * n + b for a in schema.valid_codes for b in schema.valid_codes]
    counts = np.array([(classes == c).sum() for c in codes], float)
    present = counts > 0
    sizes = sample_sizes(counts[present], [users_accuracy] * int(present.sum()),
                         target_se_overall)
    rng = np.random.default_rng(seed)
    records, geoms = [], []
    for code, size in zip(np.array(codes)[present], sizes, strict=True):
        rr, cc = np.nonzero(classes == code)
        pick = rng.choice(len(rr), min(int(size), len(rr)), replace=False)
        for r, c in zip(rr[pick], cc[pick], strict=True):
            x, y = rasterio.transform.xy(transform, r, c)
            geoms.append(Point(x, y))
            record: dict[str, Any] = {"map_class": int(code % n if reference_map else code),
                                      "reference": None}
            if reference_map is not None:
                record |= {"map_class_before": int(code // n), "reference_before": None}
            records.append(record)
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs=crs).to_crs(4326)
    _atomic_write(Path(out), frame.to_json().encode())
    return Path(out)
