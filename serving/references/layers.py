"""Reference layers read plot by plot: forest at the cutoff, loss after it, alerts.

A :class:`ReferenceLayer` is a spec (:mod:`serving.references.spec`) and its rasters:
one GeoTIFF/COG/VRT, or a folder of tiles (Hansen's 10° tiles), each role's tiles on
one grid. Each layer is read on its own grid and CRS: a plot (longitude/latitude) is
projected onto each tile it touches, plots are grouped in chunks of ``chunk_px``
pixels by where they lie, and per chunk one window is read; exactextract gives each
plot's pixels with their exact coverage, and each pixel counts by its ground area
(:func:`serving.areas.pixel_areas`), whatever the CRS. Memory is bounded by the chunk.

What a layer says of a plot (:func:`measure_layer`), in hectares of the plot:

- ``covered_fraction``: the share of the plot inside the layer and not under its no
  data (clouds, gaps). What is not covered is never counted as "no loss".
- ``forest_cutoff_ha`` / ``forest_cutoff_fraction`` (of the covered area): forest at the
  cutoff.
- ``loss_after_cutoff_ha``, ``loss_straddling_ha`` (a reporting period that straddles
  the cutoff: flag ``straddles_cutoff``), ``loss_before_cutoff_ha``, and the first
  period of loss after the cutoff.
- ``alert_after_cutoff_ha`` by confidence and the earliest alert after the cutoff (date
  and confidence).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.windows import Window, from_bounds
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from serving.areas import M2_PER_HA, pixel_areas
from serving.references.decode import (
    alert_dates,
    forest_at_cutoff,
    loss_sides,
    spec_period_starting,
)
from serving.references.spec import CUTOFF, LayerSpec, Period, SpecError, load_spec

#: Pixels per side of the chunks plots are grouped in, on a layer's grid.
DEFAULT_CHUNK_PX = 1024
#: GDAL's block cache while layers are read (its default, 5% of RAM, would let memory
#: grow with the layers read, not with the chunk).
BLOCK_CACHE_BYTES = 128 * 2**20
#: Pixel coverage under this is a sliver of floating-point edges, not part of a plot.
MIN_COVERAGE = 1e-6
#: A plot under this share of a layer's coverage is "partly outside" it.
FULLY_COVERED = 0.999


@dataclass
class Tile:
    """One tile of a layer: a raster per role, all on one grid."""

    paths: dict[str, Path]
    crs: str
    transform: Any
    width: int
    height: int
    nodata: dict[str, float | None]
    row_areas: NDArray[np.float64] | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """left, bottom, right, top in the tile's CRS."""
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


@dataclass
class ReferenceLayer:
    """A spec and the tiles it reads."""

    spec: LayerSpec
    source: Path
    tiles: list[Tile]
    name: str = ""
    _sha256: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, spec: str | Path | LayerSpec, path: str | Path,
             name: str | None = None) -> ReferenceLayer:
        """The layer of ``spec`` (a shipped name, a YAML file) over ``path``.

        Raises:
            SpecError: If the spec, the files or their grids do not fit.
        """
        spec = spec if isinstance(spec, LayerSpec) else load_spec(spec)
        path = Path(path)
        files = spec.files_in(path)
        first, *others = spec.roles
        tiles = []
        for lead in files[first]:
            with rasterio.open(lead) as src:
                if src.crs is None:
                    raise SpecError(f"layer {spec.name}: {lead} has no CRS")
                grid = (src.crs.to_string(), src.transform, src.width, src.height)
                nodata = {first: src.nodata}
            paths = {first: lead}
            for role in others:
                match = None
                for candidate in files[role]:
                    with rasterio.open(candidate) as other:
                        if (other.crs == src.crs and other.transform.almost_equals(
                                src.transform) and other.shape == src.shape):
                            match, nodata[role] = candidate, other.nodata
                            break
                if match is None:
                    raise SpecError(f"layer {spec.name}: no {role} raster on the grid of "
                                    f"{lead.name} (each role's tiles must align)")
                paths[role] = match
            tiles.append(Tile(paths, *grid, nodata))
        return cls(spec, path, tiles, name or spec.name)

    def lineage(self) -> dict[str, Any]:
        """What a verdict rests on: spec, version, files and their sha256."""
        if not self._sha256:
            for tile in self.tiles:
                for p in tile.paths.values():
                    digest = hashlib.sha256()
                    with open(p, "rb") as f:
                        for block in iter(lambda: f.read(2**20), b""):
                            digest.update(block)
                    self._sha256[str(p)] = digest.hexdigest()
        return {"spec": self.spec.name, "title": self.spec.title,
                "version": self.spec.version, "url": self.spec.url,
                "source": str(self.source), "says": self.spec.says,
                "files": [{"path": p, "sha256": h} for p, h in sorted(self._sha256.items())]}


class _Sums:
    """A plot's hectares in one layer, added over tiles and chunks."""

    def __init__(self) -> None:
        self.covered = 0.0
        self.forest = 0.0
        self.loss = {"after": 0.0, "straddles": 0.0, "before": 0.0}
        self.first_loss: Period | None = None
        self.alerts: dict[str, float] = defaultdict(float)
        self.first_alert: tuple[dt.date, str] | None = None


def measure_layer(layer: ReferenceLayer, geometries: list[BaseGeometry | None],
                  areas_ha: list[float], cutoff: dt.date = CUTOFF,
                  chunk_px: int = DEFAULT_CHUNK_PX) -> list[dict[str, Any] | None]:
    """What ``layer`` says of each plot (lon/lat geometries); None for no geometry."""
    import shapely

    sums = {i: _Sums() for i, g in enumerate(geometries) if g is not None}
    order = np.fromiter(sums, np.int64, len(sums))
    lonlat = np.asarray([geometries[i] for i in order], dtype=object)
    projected: dict[str, NDArray[Any]] = {}
    for tile in layer.tiles:
        if tile.crs not in projected:  # every plot projected once per CRS, in one call
            forward = Transformer.from_crs("EPSG:4326", tile.crs, always_xy=True)
            projected[tile.crs] = shapely.transform(lonlat, lambda xy, f=forward: np.column_stack(
                f.transform(xy[:, 0], xy[:, 1])))
        geoms = projected[tile.crs]
        inside = shapely.intersects(geoms, box(*tile.bounds)) & ~shapely.is_empty(geoms)
        if not inside.any():
            continue
        windows = _windows(tile, shapely.bounds(geoms[inside]))
        chunks: dict[tuple[int, int], list[tuple[int, BaseGeometry, Window]]] = (
            defaultdict(list))
        for i, geom, window in zip(order[inside], geoms[inside], windows, strict=True):
            if window is None:
                continue
            key = (int(window.row_off + window.height / 2) // chunk_px,
                   int(window.col_off + window.width / 2) // chunk_px)
            chunks[key].append((int(i), geom, window))
        if not chunks:
            continue
        with rasterio.Env(GDAL_CACHEMAX=BLOCK_CACHE_BYTES), _open(tile) as sources:
            for members in chunks.values():
                _measure_chunk(layer.spec, tile, sources, members, sums, cutoff)
    return [_record(layer, sums[i], areas_ha[i], cutoff) if i in sums else None
            for i in range(len(geometries))]


def _windows(tile: Tile, bounds: NDArray[np.float64]) -> list[Window | None]:
    """Each (minx, miny, maxx, maxy) row's pixels on the tile, clipped (None: none)."""
    t = tile.transform
    cols = (bounds[:, [0, 2]] - t.c) / t.a
    rows = (bounds[:, [3, 1]] - t.f) / t.e
    c0 = np.clip(np.floor(cols.min(axis=1)), 0, tile.width).astype(np.int64)
    c1 = np.clip(np.ceil(cols.max(axis=1)), 0, tile.width).astype(np.int64)
    r0 = np.clip(np.floor(rows.min(axis=1)), 0, tile.height).astype(np.int64)
    r1 = np.clip(np.ceil(rows.max(axis=1)), 0, tile.height).astype(np.int64)
    return [Window(a, b, c - a, d - b) if c > a and d > b else None
            for a, b, c, d in zip(c0.tolist(), r0.tolist(), c1.tolist(), r1.tolist(),
                                  strict=True)]


def _window(tile: Tile, bounds: tuple[float, float, float, float]) -> Window | None:
    """The tile's pixels under ``bounds`` (rounded out), clipped to the tile."""
    w = from_bounds(*bounds, transform=tile.transform)
    c0, r0 = max(0, int(np.floor(w.col_off))), max(0, int(np.floor(w.row_off)))
    c1 = min(tile.width, int(np.ceil(w.col_off + w.width)))
    r1 = min(tile.height, int(np.ceil(w.row_off + w.height)))
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


class _open:
    """The tile's rasters, open for the chunks of one tile."""

    def __init__(self, tile: Tile) -> None:
        self.tile = tile
        self.sources: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        self.sources = {role: rasterio.open(p) for role, p in self.tile.paths.items()}
        return self.sources

    def __exit__(self, *exc: object) -> None:
        for src in self.sources.values():
            src.close()


def _measure_chunk(spec: LayerSpec, tile: Tile, sources: dict[str, Any],
                   members: list[tuple[int, BaseGeometry, Window]], sums: dict[int, _Sums],
                   cutoff: dt.date) -> None:
    """One window for a chunk's plots; only the pixels they touch are decoded."""
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    c0 = min(w.col_off for _, _, w in members)
    r0 = min(w.row_off for _, _, w in members)
    c1 = max(w.col_off + w.width for _, _, w in members)
    r1 = max(w.row_off + w.height for _, _, w in members)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    data = {role: src.read(1, window=window) for role, src in sources.items()}
    h, w = next(iter(data.values())).shape
    transform = rasterio.windows.transform(window, tile.transform)
    raster = NumPyRasterSource(np.zeros((h, w), np.uint8), transform.c,
                               transform.f + transform.e * h, transform.c + transform.a * w,
                               transform.f, srs_wkt=None)
    rows = exact_extract(raster, _WKBSource([geom for _, geom, _ in members]),
                         ["cell_id", "coverage"], include_cols=["k"], output="geojson")
    owners, cells, covers = [], [], []
    for row in rows:
        idx = np.asarray(row["properties"]["cell_id"], np.int64)
        cov = np.asarray(row["properties"]["coverage"], np.float64)
        # coverage under 1e-6 is a floating-point sliver of a neighbour's edge
        keep = (idx >= 0) & (idx < h * w) & (cov > MIN_COVERAGE)
        owners.append(np.full(int(keep.sum()), int(row["properties"]["k"])))
        cells.append(idx[keep])
        covers.append(cov[keep])
    if not cells:
        return
    owner, idx, cov = np.concatenate(owners), np.concatenate(cells), np.concatenate(covers)
    touched, at = np.unique(idx, return_inverse=True)
    values = {role: array.ravel()[touched] for role, array in data.items()}
    ok = np.ones(touched.size, bool)
    for role, v in values.items():
        for bad in [tile.nodata.get(role), *spec.nodata.get(role, [])]:
            if bad is not None:
                ok &= v != bad
    ha = cov * _areas(tile, window, transform, h, w, touched)[at] / M2_PER_HA
    ok = ok[at]
    n = len(members)

    def per_plot(where: NDArray[np.bool_]) -> NDArray[np.float64]:
        return np.asarray(np.bincount(owner, weights=np.where(where, ha, 0.0), minlength=n),
                          np.float64)

    covered = per_plot(ok)
    forest = per_plot(ok & forest_at_cutoff(spec, values, cutoff)[at]) if spec.forest else None
    loss: dict[str, NDArray[np.float64]] = {}
    first_loss = None
    if spec.loss:
        side_u, start_u = loss_sides(spec, values, cutoff)
        side, start = side_u[at], start_u[at]
        for code, name in enumerate(("before", "straddles", "after"), start=1):
            loss[name] = per_plot(ok & (side == code))
        after = ok & (side == 3)
        first_loss = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first_loss, owner[after], start[after])
    alerts: dict[str, NDArray[np.float64]] = {}
    first_alert: dict[int, tuple[dt.date, str]] = {}
    if spec.alert:
        dates_u, conf_u = alert_dates(spec, values)
        dates, conf = dates_u[at], conf_u[at]
        after = ok & (dates > cutoff.toordinal()) & (conf > 0)
        alerts = {"low": per_plot(after & (conf == 1)), "high": per_plot(after & (conf == 2))}
        for k in np.unique(owner[after]):
            mine = after & (owner == k)
            order = np.lexsort((-conf[mine], dates[mine]))
            day, best = int(dates[mine][order[0]]), int(conf[mine][order[0]])
            first_alert[int(k)] = (dt.date.fromordinal(day), "high" if best == 2 else "low")
    for k, (plot, _, _) in enumerate(members):
        s = sums[plot]
        s.covered += float(covered[k])
        if forest is not None:
            s.forest += float(forest[k])
        for name, values_k in loss.items():
            s.loss[name] += float(values_k[k])
        if first_loss is not None and first_loss[k] != np.iinfo(np.int64).max:
            period = spec_period_starting(spec, dt.date.fromordinal(int(first_loss[k])))
            if s.first_loss is None or period.start < s.first_loss.start:
                s.first_loss = period
        for label, values_k in alerts.items():
            s.alerts[label] += float(values_k[k])
        found = first_alert.get(k)
        if found and (s.first_alert is None or found[0] < s.first_alert[0]):
            s.first_alert = found


def _WKBSource(geometries: list[BaseGeometry]) -> Any:
    """An exactextract feature source of WKB geometries, each with its position ``k``."""
    import shapely
    from exactextract.feature import Feature, FeatureSource

    class WKBFeature(Feature):  # type: ignore[misc]
        def __init__(self, k: int, wkb: bytes) -> None:
            super().__init__()
            self.k, self.wkb = k, wkb

        def geometry(self) -> bytes:
            return self.wkb

        def get(self, name: str) -> int:
            return self.k

        def fields(self) -> list[str]:
            return ["k"]

    class WKBSource(FeatureSource):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            wkbs = shapely.to_wkb(np.asarray(geometries, dtype=object))
            self.features = [WKBFeature(k, bytes(b)) for k, b in enumerate(wkbs)]

        def count(self) -> int:
            return len(self.features)

        def __iter__(self) -> Any:
            return iter(self.features)

        def srs_wkt(self) -> None:
            return None

    return WKBSource()


def _areas(tile: Tile, window: Window, transform: Any, h: int, w: int,
           touched: NDArray[np.int64]) -> NDArray[np.float64]:
    """Ground area (m²) of the touched pixels of a window (flat indexes)."""
    if tile.row_areas is None and rasterio.crs.CRS.from_user_input(tile.crs).is_geographic:
        # on a lon/lat grid a pixel's area depends on its row only: once per tile
        tile.row_areas = pixel_areas(tile.crs, tile.transform, tile.height, 1)[:, 0]
    if tile.row_areas is not None:
        return np.asarray(tile.row_areas[window.row_off + touched // w], np.float64)
    return np.asarray(pixel_areas(tile.crs, transform, h, w).ravel()[touched], np.float64)


def _record(layer: ReferenceLayer, s: _Sums, area_ha: float, cutoff: dt.date
            ) -> dict[str, Any]:
    spec = layer.spec
    covered = min(1.0, s.covered / area_ha) if area_ha > 0 else 0.0
    out: dict[str, Any] = {"covered_fraction": covered, "flags": []}
    if covered < FULLY_COVERED:
        out["flags"].append("partly_outside_layer" if covered > 0 else "outside_layer")
    if spec.forest:
        out["forest_cutoff_ha"] = s.forest
        out["forest_cutoff_fraction"] = s.forest / s.covered if s.covered > 0 else None
    if spec.loss:
        out["loss_after_cutoff_ha"] = s.loss["after"]
        out["loss_straddling_ha"] = s.loss["straddles"]
        out["loss_before_cutoff_ha"] = s.loss["before"]
        out["first_loss_period"] = str(s.first_loss) if s.first_loss else None
        if s.loss["straddles"] > 0:
            out["flags"].append("straddles_cutoff")
    if spec.alert:
        out["alert_after_cutoff_ha"] = s.alerts["low"] + s.alerts["high"]
        out["alert_high_after_cutoff_ha"] = s.alerts["high"]
        out["first_alert_date"] = s.first_alert[0].isoformat() if s.first_alert else None
        out["first_alert_confidence"] = s.first_alert[1] if s.first_alert else None
    return out


def open_layers(setting: str) -> list[ReferenceLayer]:
    """The layers of ``spec=path;spec=path`` (``CACAOMAP_REFERENCE_LAYERS``).

    Raises:
        SpecError: Naming the pair that cannot be opened.
    """
    layers = []
    for pair in (p.strip() for p in setting.split(";")):
        if not pair:
            continue
        spec, sep, path = pair.partition("=")
        if not sep or not spec.strip() or not path.strip():
            raise SpecError(f"{pair!r} is not spec=path")
        layers.append(ReferenceLayer.open(spec.strip(), Path(path.strip())))
    return layers


def masks_on_grid(layer: ReferenceLayer, crs: str, transform: Any, shape: tuple[int, int],
                  cutoff: dt.date = CUTOFF) -> dict[str, NDArray[np.bool_]]:
    """What ``layer`` says on another grid (a small window: evidence pictures).

    Keys: ``forest`` (at the cutoff), ``loss`` (after it: loss or alerts of any
    confidence) and ``straddles``; each decoded on the layer's grid, then resampled to
    the target by nearest neighbour.
    """
    from rasterio.warp import Resampling, reproject, transform_bounds

    height, width = shape
    out = {k: np.zeros(shape, bool) for k in ("forest", "loss", "straddles")}
    west, south = transform.c, transform.f + transform.e * height
    east, north = transform.c + transform.a * width, transform.f
    spec = layer.spec
    for tile in layer.tiles:
        bounds = transform_bounds(crs, tile.crs, west, south, east, north)
        window = _window(tile, bounds)
        if window is None:
            continue
        with _open(tile) as sources:
            data = {role: src.read(1, window=window) for role, src in sources.items()}
        codes = np.zeros(next(iter(data.values())).shape, np.uint8)  # 1 forest 2 loss 3 str.
        if spec.forest:
            codes[forest_at_cutoff(spec, data, cutoff)] = 1
        if spec.loss:
            side, _ = loss_sides(spec, data, cutoff)
            codes[side == 3] = 2
            codes[side == 2] = 3
        if spec.alert:
            dates, conf = alert_dates(spec, data)
            codes[(dates > cutoff.toordinal()) & (conf > 0)] = 2
        target = np.zeros(shape, np.uint8)
        reproject(codes, target, src_transform=rasterio.windows.transform(window,
                                                                          tile.transform),
                  src_crs=tile.crs, dst_transform=transform, dst_crs=crs,
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        out["forest"] |= target == 1
        out["loss"] |= target == 2
        out["straddles"] |= target == 3
    return out
