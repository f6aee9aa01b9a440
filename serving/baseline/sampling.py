"""The reference sample: points to label, and area estimates from labelled points.

:func:`draw_sample` draws a stratified random sample of a class map (or of its
transitions) sized per Olofsson et al. (2014, section 5.1); :func:`estimate_from_sample`
turns the labelled points into an error matrix, accuracies and areas with 95%
confidence intervals (:mod:`serving.baseline.accuracy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from serving.areas import class_hectares
from serving.baseline.accuracy import sample_sizes, stratified_estimate
from serving.baseline.change import ClassMaps, load_class_maps, transition_codes
from serving.classes import ClassSchema
from serving.files import write_bytes_atomic


def estimate_from_sample(maps: ClassMaps, schema: ClassSchema, sample: str | Path
                         ) -> dict[str, Any]:
    """Olofsson estimates from labelled points.

    Field ``reference`` (or ``label``, as points labelled in the map page or by
    ``cacaomap labels suggest --strategy olofsson`` carry it): the class at the current
    date; the map class at each point is its stratum. With a ``reference_before``
    field too (the class at the reference date), the strata are the map's transitions
    and the estimates are transition areas (``forest->oil_palm`` ...). Points on
    nodata, and points left unlabelled (null: skipped, or "can't tell"), are left out.
    """
    import geopandas as gpd

    points = gpd.read_file(sample).to_crs(maps.profile["crs"])
    field = next((f for f in ("reference", "label") if f in points.columns), None)
    if field is None:
        raise ValueError(f"{sample}: the sample needs a 'reference' (or 'label') field "
                         "(class code)")
    labelled = points[field].notna()
    if "reference_before" in points.columns:
        labelled &= points["reference_before"].notna()
    points = points[labelled]
    rows, cols = rasterio.transform.rowcol(maps.profile["transform"], points.geometry.x,
                                           points.geometry.y)
    rows, cols = np.asarray(rows), np.asarray(cols)
    inside = (rows >= 0) & (rows < maps.current.shape[0]) & (cols >= 0) & (
        cols < maps.current.shape[1])
    n = schema.num_classes
    names = schema.names
    mapped = maps.current[rows[inside], cols[inside]].astype(np.int64)
    truth = points[field].to_numpy()[inside].astype(np.int64)
    keep = (mapped != schema.nodata) & (truth != schema.nodata)
    codes = schema.valid_codes
    labels = [names[c] for c in codes]
    area = class_hectares(maps.current, maps.areas_m2, n)[codes]
    if "reference_before" in points.columns:
        before_map = maps.reference[rows[inside], cols[inside]].astype(np.int64)
        before = points["reference_before"].to_numpy()[inside].astype(np.int64)
        keep &= (before_map != schema.nodata) & (before != schema.nodata)
        mapped, truth = before_map * n + mapped, before * n + truth
        codes = [a * n + b for a in schema.valid_codes for b in schema.valid_codes]
        labels = [f"{names[c // n]}->{names[c % n]}" for c in codes]
        area = class_hectares(transition_codes(maps, n), maps.areas_m2, n * n)[codes]
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
    write_bytes_atomic(Path(out), frame.to_json().encode())
    return Path(out)
