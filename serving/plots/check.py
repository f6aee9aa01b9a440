"""Plot checks: each plot's baseline record, reading only the windows plots touch.

For every plot (:mod:`serving.plots.geolocation`) and every zone of the source whose
band it enters, the part of the plot in that band is projected onto the zone's
lattice. Parts are grouped into chunks of ``chunk_px`` lattice pixels by where they
lie; per chunk one window (the parts' bounding boxes plus the forest-patch margin) is
read from both periods' class maps and confidence COGs, the forest definition is
applied (:mod:`serving.baseline.forest_patches`), and exactextract gives each part's pixels with
their exact coverage. A plot's parts (two cells, two UTM zones) add up to one record.
Memory is bounded by the chunks in flight (``workers`` of them), never by the region.

The record of a plot: its area (geodesic) and the share of it inside the store;
forest at the reference date (patches of at least ``min_forest_ha``), stable forest,
loss by driver (ha), the share observed at both dates, confidences, the verdict, and
flags. Confidences are means over the plot's pixels, weighted by coverage:
``forest_confidence`` of the reference map over its forest, ``loss_confidence`` over
its loss pixels and ``map_confidence`` over all it observed at both dates, where a
pixel's confidence in a transition is the product of both dates' confidences (the
chance that both classes are right, taking the dates' errors as independent). The verdict is that of
:func:`serving.baseline.change.verdict`, and a ``deforestation_detected`` whose loss
confidence is under ``min_confidence`` becomes ``needs_review``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep

from serving.areas import M2_PER_HA, pixel_areas
from serving.baseline.change import DRIVERS, FOREST, Thresholds, verdict
from serving.baseline.forest_patches import DEFAULT_MIN_FOREST_HA, forest_in_patches, margin_px
from serving.inference.confidence import decode_confidence
from serving.plots.geolocation import DEFAULT_POINT_AREA_HA, MAX_PLOT_HA, Plot
from serving.plots.sensors import sensor_masks
from serving.references.convergence import Rule
from serving.references.layers import ReferenceLayer
from serving.references.spec import CUTOFF
from serving.store.grid import from_lonlat
from serving.store.reader import MapSource, ZoneMaps, ZoneReader

#: Lattice pixels per side of the chunks plots are grouped in.
DEFAULT_CHUNK_PX = 1024
#: GDAL's block cache while plots are checked (memory stays bounded by it).
BLOCK_CACHE_BYTES = 128 * 2**20
#: Loss confidence under which a detection needs a person's review.
DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class CheckOptions:
    """How plots are judged.

    Attributes:
        thresholds: When loss counts, and when data are too few.
        min_forest_ha: Smallest forest patch at the reference date (FAO: 0.5 ha).
        min_confidence: Mean loss confidence under which a detection is
            ``needs_review``.
        chunk_px: Side of the chunks plots are grouped in (memory per chunk in flight).
        workers: Chunks read and measured at once.
    """

    thresholds: Thresholds = field(default_factory=Thresholds)
    min_forest_ha: float = DEFAULT_MIN_FOREST_HA
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    chunk_px: int = DEFAULT_CHUNK_PX
    workers: int = 2

    def to_dict(self) -> dict[str, Any]:
        """As recorded in lineage."""
        return asdict(self.thresholds) | {"min_forest_ha": self.min_forest_ha,
                                          "min_confidence": self.min_confidence}


class _Sums:
    """What a plot's parts add up to (hectares and confidence-weighted hectares)."""

    def __init__(self, n_classes: int) -> None:
        self.in_store_ha = 0.0
        self.valid_ha = 0.0
        self.small_forest_ha = 0.0
        self.to = np.zeros(n_classes)  # reference forest (in patches) -> current class
        self.forest_conf = [0.0, 0.0]  # sum(conf x ha), sum(ha) where conf is known
        self.loss_conf = [0.0, 0.0]
        self.map_conf = [0.0, 0.0]
        self.cells: set[str] = set()
        self.failed_cells: set[str] = set()
        self.zones: set[str] = set()
        self.sensors: list[float] | None = None  # ha seen optically, by radar alone

    def add(self, other: _Sums) -> None:
        """Add another part's sums."""
        self.in_store_ha += other.in_store_ha
        self.valid_ha += other.valid_ha
        self.small_forest_ha += other.small_forest_ha
        self.to += other.to
        for mine, theirs in ((self.forest_conf, other.forest_conf),
                             (self.loss_conf, other.loss_conf),
                             (self.map_conf, other.map_conf)):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        self.cells |= other.cells
        self.failed_cells |= other.failed_cells
        self.zones |= other.zones
        if other.sensors is not None:
            mine = self.sensors or [0.0, 0.0]
            self.sensors = [mine[0] + other.sensors[0], mine[1] + other.sensors[1]]


@dataclass
class _Part:
    plot: int
    zone: int
    geometry: BaseGeometry  # in the zone's CRS
    window: Window  # its bounding box on the zone's lattice


def check_plots(plots: list[Plot], source: MapSource, options: CheckOptions | None = None,
                on_progress: Callable[[int, int], None] | None = None
                ) -> list[dict[str, Any]]:
    """One record per plot, in input order (plots with an error keep it).

    Args:
        plots: Parsed plots.
        source: The store (or pair of maps) to read.
        options: Thresholds and chunking.
        on_progress: Called with (chunks done, chunks in all).
    """
    options = options or CheckOptions()
    schema = source.schema
    sums = {p.index: _Sums(schema.num_classes) for p in plots if p.error is None}
    chunks: dict[tuple[int, int, int], list[_Part]] = defaultdict(list)
    for part in _parts([p for p in plots if p.error is None], source):
        w = part.window
        key = (part.zone, int(w.row_off + w.height / 2) // options.chunk_px,
               int(w.col_off + w.width / 2) // options.chunk_px)
        chunks[key].append(part)
    done = 0
    # Each thread keeps its files open across its chunks (neighbouring chunks share
    # the COG blocks at their edges: GDAL's block cache, bounded, serves them again).
    local = threading.local()
    readers: list[ZoneReader] = []

    def measure(key: tuple[int, int, int]) -> list[tuple[int, _Sums]]:
        own: dict[int, ZoneReader] | None = getattr(local, "readers", None)
        if own is None:
            own = local.readers = {}
        zone = source.zones[key[0]]
        if key[0] not in own:
            own[key[0]] = ZoneReader(zone)
            readers.append(own[key[0]])
        return _measure_chunk(zone, own[key[0]], chunks[key], source, options)

    try:
        with rasterio.Env(GDAL_CACHEMAX=BLOCK_CACHE_BYTES), ThreadPoolExecutor(
                max(1, options.workers), thread_name_prefix="plots") as pool:
            for deltas in pool.map(measure, sorted(chunks)):  # row-major: neighbours
                for index, delta in deltas:
                    sums[index].add(delta)
                done += 1
                if on_progress:
                    on_progress(done, len(chunks))
    finally:
        for reader in readers:
            reader.close()
    return [_record(p, sums.get(p.index), source, options) for p in plots]


def _parts(plots: list[Plot], source: MapSource) -> list[_Part]:
    """Each plot cut by the zones' bands and projected onto their lattices."""
    parts = []
    shapes: dict[int, BaseGeometry] = {p.index: p.geometry for p in plots
                                       if p.geometry is not None}
    for z, zone in enumerate(source.zones):
        zone_band = zone.band
        if zone_band is not None:
            band = prep(zone_band)
            mine = [p for p in plots if band.intersects(shapes[p.index])]
            geoms = [g if zone_band.contains(g) else g.intersection(zone_band)
                     for g in (shapes[p.index] for p in mine)]
        else:
            mine, geoms = plots, [shapes[p.index] for p in plots]
        if not mine:
            continue
        projected = from_lonlat(geoms, zone.crs)
        built = _cells_extent(zone)
        for plot, geom in zip(mine, projected, strict=True):
            if geom.is_empty or geom.area == 0 or built is None:
                continue
            window = _clip(zone.pixel_window(geom.bounds), built)
            if window is not None:  # else the part lies outside every cell: not read
                parts.append(_Part(plot.index, z, geom, window))
    return parts


def _cells_extent(zone: ZoneMaps) -> Window | None:
    """The lattice window holding every cell of a zone (None: no cell)."""
    if not zone.cells:
        return None
    r0 = min(c.row_off for c in zone.cells)
    c0 = min(c.col_off for c in zone.cells)
    r1 = max(c.row_off + c.height for c in zone.cells)
    c1 = max(c.col_off + c.width for c in zone.cells)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _clip(window: Window, extent: Window) -> Window | None:
    """``window`` clipped to ``extent``: windows are never larger than the store."""
    r0, c0 = max(window.row_off, extent.row_off), max(window.col_off, extent.col_off)
    r1 = min(window.row_off + window.height, extent.row_off + extent.height)
    c1 = min(window.col_off + window.width, extent.col_off + extent.width)
    if r0 >= r1 or c0 >= c1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _measure_chunk(zone: ZoneMaps, reader: ZoneReader, parts: list[_Part],
                   source: MapSource, options: CheckOptions) -> list[tuple[int, _Sums]]:
    """Read one window for a chunk's parts; each part's sums, with its plot's index."""
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    schema = source.schema
    forest = schema.code_of(FOREST)
    nodata = schema.nodata
    margin = margin_px(options.min_forest_ha, zone.resolution**2)
    c0 = min(p.window.col_off for p in parts) - margin
    r0 = min(p.window.row_off for p in parts) - margin
    c1 = max(p.window.col_off + p.window.width for p in parts) + margin
    r1 = max(p.window.row_off + p.window.height for p in parts) + margin
    window = Window(c0, r0, c1 - c0, r1 - r0)
    confident = zone.has("confidence")
    ref, inside_ref = reader.read("classes", "reference", window)
    cur, inside_cur = reader.read("classes", "current", window)
    if confident:
        conf_ref = decode_confidence(reader.read("confidence", "reference", window)[0])
        conf_cur = decode_confidence(reader.read("confidence", "current", window)[0])
    inside = inside_ref & inside_cur
    transform = zone.window_transform(window)
    h, w = ref.shape
    areas = pixel_areas(zone.crs, transform, h, w)
    in_patch = forest_in_patches(ref == forest, areas, options.min_forest_ha)
    raster = NumPyRasterSource(np.zeros((h, w), np.uint8), transform.c,
                               transform.f + transform.e * h, transform.c + transform.a * w,
                               transform.f, srs_wkt=None)
    features = [{"type": "Feature", "id": i, "properties": {"i": i},
                 "geometry": mapping(p.geometry)} for i, p in enumerate(parts)]
    rows = exact_extract(raster, features, ["cell_id", "coverage"], include_cols=["i"],
                         output="geojson")
    # Every part's pixels at once: (part, pixel, coverage) triples, summed per part.
    n, count = schema.num_classes, len(parts)
    order = [int(row["properties"]["i"]) for row in rows]
    cell_ids = [np.asarray(row["properties"]["cell_id"], np.int64) for row in rows]
    owner = np.repeat(np.asarray(order, np.int64), [len(c) for c in cell_ids])
    idx = np.concatenate(cell_ids) if cell_ids else np.zeros(0, np.int64)
    cov = np.concatenate([np.asarray(row["properties"]["coverage"], np.float64)
                          for row in rows]) if rows else np.zeros(0)
    ok = (idx >= 0) & (idx < h * w)
    owner, idx, cov = owner[ok], idx[ok], cov[ok]
    ha = cov * areas.ravel()[idx] / M2_PER_HA
    here = inside.ravel()[idx]
    r, c = ref.ravel()[idx], cur.ravel()[idx]
    valid = here & (r != nodata) & (c != nodata)
    patch = in_patch.ravel()[idx] & valid

    def per_part(where: NDArray[np.bool_], values: NDArray[np.float64] = ha
                 ) -> NDArray[np.float64]:
        return np.asarray(np.bincount(owner, weights=np.where(where, values, 0.0),
                                      minlength=count), np.float64)

    in_store, valid_ha = per_part(here), per_part(valid)
    sensors = sensor_masks(zone, reader, window)
    if sensors is not None:
        optical_ha = per_part(valid & sensors[0].ravel()[idx])
        radar_ha = per_part(valid & sensors[1].ravel()[idx])
    small = per_part(valid & (r == forest) & ~patch)
    to = np.bincount(owner * n + c, weights=np.where(patch, ha, 0.0),
                     minlength=count * n).reshape(count, n)
    conf_sums: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
    if confident:
        cr = conf_ref.ravel()[idx]
        both = cr * conf_cur.ravel()[idx]
        for values, where in ((cr, patch), (both, patch & (c != forest)), (both, valid)):
            known = where & np.isfinite(values)
            conf_sums.append((per_part(known, np.nan_to_num(values) * ha), per_part(known)))
    out = []
    for k, part in enumerate(parts):
        s = _Sums(n)
        s.in_store_ha, s.valid_ha, s.small_forest_ha = (
            float(in_store[k]), float(valid_ha[k]), float(small[k]))
        s.to = to[k].copy()
        if sensors is not None:
            s.sensors = [float(optical_ha[k]), float(radar_ha[k])]
        if conf_sums:
            (fw, fh), (lw, lh), (mw, mh) = conf_sums
            s.forest_conf = [float(fw[k]), float(fh[k])]
            s.loss_conf = [float(lw[k]), float(lh[k])]
            s.map_conf = [float(mw[k]), float(mh[k])]
        s.zones.add(zone.name)
        touched = [cell for cell in zone.cells if cell.window_in(part.window) is not None]
        s.cells.update(cell.id for cell in touched if not cell.failed)
        s.failed_cells.update(cell.id for cell in touched if cell.failed)
        out.append((part.plot, s))
    return out


def _record(plot: Plot, s: _Sums | None, source: MapSource, options: CheckOptions
            ) -> dict[str, Any]:
    """The plot's record from its sums (or its error)."""
    record: dict[str, Any] = {
        "plot_id": plot.plot_id, "index": plot.index, "geometry_used": plot.geometry_used,
        "declared_area_ha": plot.declared_ha, "area_ha": round(plot.area_ha, 6),
    }
    if plot.error is not None or s is None:
        return record | {"verdict": "error", "error": plot.error or "not checked",
                         "flags": list(plot.flags)}
    flags = list(plot.flags)
    schema = source.schema
    if s.failed_cells:
        flags.append("cell_not_built")
    if s.in_store_ha <= 0:
        why = (f"the store's cell(s) {', '.join(sorted(s.failed_cells))} under the plot "
               "failed to build" if s.failed_cells else
               "the plot lies outside the store's cells")
        return record | {"verdict": "error", "flags": flags, "error": why}
    area = plot.area_ha if plot.area_ha > 0 else s.in_store_ha
    in_store = min(1.0, s.in_store_ha / area)
    if in_store < 0.999:
        flags.append("partly_outside_store")
    forest = schema.code_of(FOREST)
    forest_ha = float(s.to.sum())
    record |= {
        "in_store_fraction": in_store,
        "valid_fraction": min(1.0, s.valid_ha / area),
        "forest_ref_ha": forest_ha,
        "forest_small_patches_ha": s.small_forest_ha,
        "stable_forest_ha": float(s.to[forest]),
    }
    loss = 0.0
    for name in DRIVERS:
        ha = float(s.to[schema.code_of(name)]) if name in schema.names else 0.0
        record[f"loss_to_{name}_ha"] = ha
        loss += ha
    record["forest_loss_ha"] = loss
    record["forest_loss_fraction"] = loss / area
    if s.sensors is not None:  # a store with radar: what the classes rest on
        record["seen_optically_fraction"] = min(1.0, s.sensors[0] / area)
        record["radar_only_fraction"] = min(1.0, s.sensors[1] / area)
        if s.sensors[1] > 0:
            flags.append("classified_from_radar")
    record["forest_confidence"] = (s.forest_conf[0] / s.forest_conf[1]
                                   if s.forest_conf[1] > 0 else None)
    record["loss_confidence"] = (s.loss_conf[0] / s.loss_conf[1]
                                 if s.loss_conf[1] > 0 else None)
    record["map_confidence"] = (s.map_conf[0] / s.map_conf[1]
                                if s.map_conf[1] > 0 else None)
    judged = verdict({**record, "zone_id": plot.plot_id}, options.thresholds)
    if (judged == "deforestation_detected" and record["loss_confidence"] is not None
            and record["loss_confidence"] < options.min_confidence):
        judged = "needs_review"
        flags.append("low_confidence")
    if area < options.thresholds.min_loss_ha:
        # No loss this small can be detected: "free" would be a claim on no evidence.
        flags.append("below_detection_area")
        if judged == "deforestation_free":
            judged = "needs_review"
    record["verdict"] = judged
    record["flags"] = flags
    record["cells"] = sorted(s.cells)
    record["zones"] = sorted(s.zones)
    return record


def verdict_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many plots got each verdict."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return counts


def run_checks(data: bytes | dict[str, Any], source: MapSource | None,
               options: CheckOptions | None = None, *, name: str = "plots",
               point_area_ha: float = DEFAULT_POINT_AREA_HA, max_plots: int | None = None,
               max_vertices: int = 1_000_000,
               on_progress: Callable[[int, int], None] | None = None,
               references: list[ReferenceLayer] | None = None, review_rule: Rule = "any",
               max_plot_ha: float = MAX_PLOT_HA,
               ) -> tuple[list[Plot], list[dict[str, Any]], dict[str, Any]]:
    """Parse a plots body, check every plot, and say what was checked against what.

    Args:
        data: The plots (EUDR GeoJSON).
        source: The model's store (or pair of maps); None: the reference layers alone.
        options: Thresholds and chunking.
        name: The body's name in messages and lineage.
        point_area_ha: Area checked around a point that declares none.
        max_plots: The most plots a body may hold.
        max_vertices: The most vertices all plots may have.
        on_progress: Called with (chunks done, chunks in all).
        references: Reference layers read beside the model (or alone).
        review_rule: When model and layers disagree enough for ``needs_review``
            (:mod:`serving.references.convergence`).
        max_plot_ha: The largest plot checked (a larger one is that plot's error).

    Returns:
        (plots, records, summary): the summary holds the verdict counts and the
        lineage (the source, the layers, thresholds, the reference period against the
        cutoff).

    Raises:
        PlotsError: The body is not GeoJSON at all, or over the limits, or there is
            neither a store nor a layer to check against.
    """
    import datetime as dt
    import hashlib
    import json

    from serving.plots.geolocation import DEFAULT_MAX_PLOTS, PlotsError, read_plots
    from serving.plots.reference_checks import add_references, base_record

    if source is None and not references:
        raise PlotsError("nothing to check the plots against: give a store (or maps) or "
                         "reference layers")
    options = options or CheckOptions()
    plots = read_plots(data, name=name, point_area_ha=point_area_ha,
                       max_plots=max_plots or DEFAULT_MAX_PLOTS, max_vertices=max_vertices,
                       max_plot_ha=max_plot_ha)
    meta: dict[str, Any] = dict(source.meta) if source is not None else {}
    cutoff = str(meta.get("cutoff") or CUTOFF.isoformat())
    if source is not None:
        records = check_plots(plots, source, options, on_progress)
    else:
        records = [base_record(p, options.thresholds) for p in plots]
    if references:
        add_references(plots, records, references, options.thresholds,
                       with_model=source is not None, rule=review_rule,
                       cutoff=dt.date.fromisoformat(cutoff))
    raw = data if isinstance(data, bytes) else json.dumps(data, default=str).encode()
    periods = meta.get("periods") or {}
    base = source.lineage if source is not None else {"source": "reference layers only"}
    summary = {
        "verdicts": verdict_counts(records),
        "lineage": base | {
            "references": [layer.lineage() for layer in references or []],
            "review_rule": review_rule if references and source is not None else None,
            "options": options.to_dict() | {"point_area_ha": point_area_ha},
            "reference_period": periods.get("reference"),
            "current_period": periods.get("current"),
            "cutoff": cutoff,
            "reference_ends_by_cutoff": (periods["reference"].split("/")[-1] <= cutoff
                                         if periods.get("reference") and cutoff else None),
            "input": {"name": name, "sha256": hashlib.sha256(raw).hexdigest(),
                      "plots": len(plots)},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }
    return plots, records, summary
