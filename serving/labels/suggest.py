"""Points worth labelling: where the model is unsure, per class at random, or a mix.

``cacaomap labels suggest`` reads class maps and their confidence COGs
(:mod:`serving.inference.confidence`, written beside every class map) block by block
and returns points to label as GeoJSON (EPSG:4326), each with an empty ``label``, the
class the model gave (``map_class``, ``map_class_name``) and its ``uncertainty``.

**Uncertainty** is one minus the confidence: one minus the blended probability of the
class given (least-confidence sampling), in [0, 1] at the confidence COG's 1 % steps;
the baseline's ``needs_review`` reads the same number.

Strategies:

- ``uncertainty``: the most uncertain pixels first.
- ``random``: a stratified random sample, an equal share per class present (a class
  with too few pixels gives its remainder to the others).
- ``mix`` (default): ``uncertain_share`` of the points by uncertainty, the rest random.
- ``olofsson``: the stratified sample for area estimation of ``cacaomap maps sample-points``
  (Olofsson et al. 2014), so reference samples are labelled the same way.

Points are spread: no two closer than ``min_distance_m`` on the ground, nor closer to a
point of ``away_from`` (labels you have); ``zones`` (polygons) keep them inside. Each
pixel's random key is a hash of its map, row, column and the seed, so the choice does
not depend on the block size, and memory holds a block and a bounded pool of
candidates per map, never the whole map.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.features import geometry_mask
from rasterio.windows import Window

from serving.classes import ClassSchema
from serving.files import read_vector_file
from serving.inference.confidence import CONFIDENCE_NODATA, CONFIDENCE_SCALE, confidence_path

Strategy = Literal["uncertainty", "random", "mix", "olofsson"]
#: Candidates kept per point asked, per pool, before spreading them out.
POOL_PER_POINT = 20


class SuggestError(ValueError):
    """Input that cannot give suggestions; the message names it."""


@dataclass(order=True)
class _Candidate:
    """A pixel that may be suggested; ordered by ``priority`` (lower first)."""

    priority: float
    map_index: int = field(compare=False)
    row: int = field(compare=False)
    col: int = field(compare=False)
    code: int = field(compare=False)
    uncertainty: float = field(compare=False)


def pixel_keys(map_index: int, rows: NDArray[np.int64], cols: NDArray[np.int64],
               seed: int) -> NDArray[np.float64]:
    """A uniform random key in [0, 1) per pixel, a hash of (map, row, col, seed).

    SplitMix64 of the pixel's position: the same pixel gets the same key whatever the
    block it is read in.
    """
    with np.errstate(over="ignore"):
        z = (rows.astype(np.uint64) << np.uint64(32)) ^ cols.astype(np.uint64)
        z ^= np.uint64((map_index * 0x9E3779B1 + seed * 0x85EBCA77) & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _blocks(height: int, width: int, side: int) -> Iterator[Window]:
    for r in range(0, height, side):
        for c in range(0, width, side):
            yield Window(c, r, min(side, width - c), min(side, height - r))


class _Pool:
    """The ``size`` candidates of lowest priority seen so far (a bounded heap)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[float, int, _Candidate]] = []  # max-heap by -priority
        self.count = 0

    def offer(self, priorities: NDArray[np.float64], make: Any) -> None:
        """Offer a block's pixels; only the block's best ``size`` are looked at."""
        if not len(priorities) or not self.size:
            return
        best = np.argpartition(priorities, min(self.size, len(priorities)) - 1)[:self.size]
        if len(self.heap) == self.size:  # only those better than the worst kept
            best = best[priorities[best] < -self.heap[0][0]]
        for i in best:
            p = float(priorities[i])
            if len(self.heap) < self.size:
                self.count += 1
                heapq.heappush(self.heap, (-p, self.count, make(int(i), p)))
            elif p < -self.heap[0][0]:
                self.count += 1
                heapq.heapreplace(self.heap, (-p, self.count, make(int(i), p)))

    def ordered(self) -> list[_Candidate]:
        """The candidates, best first."""
        return sorted(c for _, _, c in self.heap)


def _zone_geometries(zones: Path | None, crs: Any) -> list[Any] | None:
    if zones is None:
        return None
    frame = read_vector_file(zones, "zones", SuggestError)
    geoms = [g for g in frame.to_crs(crs).geometry if g is not None and not g.is_empty]
    if not geoms:
        raise SuggestError(f"{zones}: no zone polygons")
    return geoms


def collect_candidates(
    maps: list[Path], schema: ClassSchema, uncertain: int, per_class: dict[int, int],
    seed: int, zones: Path | None = None, block: int = 1024,
) -> tuple[list[_Candidate], dict[int, list[_Candidate]], dict[int, int]]:
    """Pools of candidates: the most uncertain pixels, and random pixels per class.

    Returns:
        The uncertainty pool (most uncertain first, ties broken by the random key), the
        random pool of each class (in key order), and the pixels of each class seen.
    """
    need_confidence = uncertain > 0
    top = _Pool(uncertain * POOL_PER_POINT)
    by_class = {code: _Pool(n * POOL_PER_POINT) for code, n in per_class.items()}
    seen = dict.fromkeys(schema.valid_codes, 0)
    for m, path in enumerate(maps):
        conf_path = confidence_path(path)
        if need_confidence and not conf_path.exists():
            raise SuggestError(f"{path} has no confidence COG beside it ({conf_path.name}): "
                               "classify it with cacaomap maps classify, or use --strategy random")
        with rasterio.open(path) as src:
            geoms = _zone_geometries(zones, src.crs)
            conf_src = rasterio.open(conf_path) if conf_path.exists() else None
            try:
                if conf_src is not None and (conf_src.shape != src.shape
                                             or conf_src.transform != src.transform):
                    raise SuggestError(f"{conf_path} is not on the grid of {path}")
                for window in _blocks(src.height, src.width, block):
                    codes = src.read(1, window=window).astype(np.int64)
                    valid = np.isin(codes, schema.valid_codes)
                    if geoms is not None:
                        valid &= geometry_mask(geoms, codes.shape, src.window_transform(
                            window), invert=True)
                    conf = (conf_src.read(1, window=window) if conf_src is not None
                            else np.zeros(codes.shape, np.uint8))
                    if conf_src is not None:
                        valid &= conf != CONFIDENCE_NODATA
                    rr, cc = np.nonzero(valid)
                    if not len(rr):
                        continue
                    rows = rr + int(window.row_off)
                    cols = cc + int(window.col_off)
                    keys = pixel_keys(m, rows, cols, seed)
                    code = codes[rr, cc]
                    unc = (1.0 - conf[rr, cc].astype(np.float64) / CONFIDENCE_SCALE
                           if conf_src is not None else np.full(len(rr), np.nan))

                    def make(i: int, p: float, rows: Any = rows, cols: Any = cols,
                             code: Any = code, unc: Any = unc, m: int = m) -> _Candidate:
                        return _Candidate(p, m, int(rows[i]), int(cols[i]), int(code[i]),
                                          float(unc[i]))

                    if need_confidence:  # most uncertain first; the key breaks ties
                        top.offer(-unc + keys * 1e-3 / CONFIDENCE_SCALE, make)
                    for c in per_class:
                        chosen = np.nonzero(code == c)[0]
                        by_class[c].offer(keys[chosen], lambda i, p, chosen=chosen:
                                          make(int(chosen[i]), p))
                    for c, n in zip(*np.unique(code, return_counts=True), strict=True):
                        seen[int(c)] = seen.get(int(c), 0) + int(n)
            finally:
                if conf_src is not None:
                    conf_src.close()
    return top.ordered(), {c: p.ordered() for c, p in by_class.items()}, seen


def class_quotas(total: int, present: list[int], available: dict[int, int]) -> dict[int, int]:
    """An equal share of ``total`` per class, a class short of pixels passing it on."""
    quotas = dict.fromkeys(present, 0)
    left = total
    open_classes = [c for c in present if available.get(c, 0) > 0]
    while left > 0 and open_classes:
        share = max(1, left // len(open_classes))
        for c in list(open_classes):
            give = min(share, available[c] - quotas[c], left)
            quotas[c] += give
            left -= give
            if quotas[c] >= available[c]:
                open_classes.remove(c)
            if left == 0:
                break
    return quotas


class _Spread:
    """Accepts points at least ``min_distance`` metres from every accepted point."""

    def __init__(self, min_distance: float) -> None:
        self.d = float(min_distance)
        self.cells: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def add(self, x: float, y: float, force: bool = False) -> bool:
        """Accept (and remember) the point if it is far enough; ``force``: always."""
        if self.d <= 0:
            return True
        cx, cy = math.floor(x / self.d), math.floor(y / self.d)
        if not force:
            for i in (cx - 1, cx, cx + 1):
                for j in (cy - 1, cy, cy + 1):
                    for px, py in self.cells.get((i, j), ()):
                        if (px - x) ** 2 + (py - y) ** 2 < self.d**2:
                            return False
        self.cells.setdefault((cx, cy), []).append((x, y))
        return True


def _metric(lonlat: NDArray[np.float64], crs: Any) -> NDArray[np.float64]:
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = t.transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def _lonlat(maps: list[Path], cands: list[_Candidate]) -> NDArray[np.float64]:
    from pyproj import Transformer

    out = np.zeros((len(cands), 2))
    for m, path in enumerate(maps):
        idx = [i for i, c in enumerate(cands) if c.map_index == m]
        if not idx:
            continue
        with rasterio.open(path) as src:
            xs, ys = rasterio.transform.xy(src.transform, [cands[i].row for i in idx],
                                           [cands[i].col for i in idx])
            t = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
            lon, lat = t.transform(np.asarray(xs, float), np.asarray(ys, float))
        out[idx, 0], out[idx, 1] = lon, lat
    return out


def suggest_labels(
    maps: list[Path], n: int, schema: ClassSchema, strategy: Strategy = "mix",
    uncertain_share: float = 0.5, min_distance_m: float = 100.0,
    zones: Path | None = None, away_from: Path | None = None, seed: int = 0,
    block: int = 1024,
) -> tuple[Any, list[str]]:
    """Points to label (a GeoDataFrame in EPSG:4326) and notes on what was short.

    Raises:
        SuggestError: For no maps, a map without its confidence COG (uncertainty), bad
            zones or labels, or no labelable pixel.
    """
    import geopandas as gpd
    from shapely.geometry import Point

    if n < 1:
        raise SuggestError(f"n must be at least 1, not {n}")
    if not 0.0 <= uncertain_share <= 1.0:
        raise SuggestError(f"uncertain_share must be in [0, 1], not {uncertain_share}")
    if min_distance_m < 0:
        raise SuggestError(f"min_distance_m must be >= 0, not {min_distance_m}")
    if not maps:
        raise SuggestError("no class maps given")
    for path in maps:
        if not Path(path).is_file():
            raise SuggestError(f"no such class map: {path}")
    uncertain = {"uncertainty": n, "random": 0, "mix": round(n * uncertain_share)}[strategy]
    random_n = n - uncertain
    top, by_class, seen = collect_candidates(
        maps, schema, uncertain, dict.fromkeys(schema.valid_codes, random_n), seed, zones,
        block)
    if not any(seen.values()):
        raise SuggestError("the maps hold no classified pixel" + (" inside the zones"
                                                                  if zones else ""))
    pool = top + [c for cands in by_class.values() for c in cands]
    lonlat = _lonlat(maps, pool)
    centre = lonlat.mean(0)
    crs = gpd.GeoSeries([Point(*centre)], crs=4326).estimate_utm_crs()
    xy = _metric(lonlat, crs)
    where = {id(c): xy[i] for i, c in enumerate(pool)}
    spread = _Spread(min_distance_m)
    if away_from is not None:
        known = read_vector_file(away_from, "labels", SuggestError)
        pts = known.to_crs(crs).geometry.representative_point()
        for p in pts:
            spread.add(p.x, p.y, force=True)
    chosen: list[tuple[_Candidate, str]] = []
    taken: set[int] = set()

    def take(c: _Candidate, why: str) -> bool:
        if id(c) in taken or not spread.add(*where[id(c)]):
            return False
        taken.add(id(c))
        chosen.append((c, why))
        return True

    notes = []
    for c in top:
        if sum(1 for _, w in chosen if w == "uncertainty") >= uncertain:
            break
        take(c, "uncertainty")
    got = len(chosen)
    if got < uncertain:
        notes.append(f"{got} of {uncertain} uncertain points: the rest fall within "
                     f"{min_distance_m:g} m of others (lower --min_distance_m)")
    present = [c for c in schema.valid_codes if seen.get(c, 0) > 0]
    quotas = class_quotas(n - len(chosen), present, {c: len(by_class[c]) for c in present})
    for code in present:
        got_c = 0
        for c in by_class[code]:
            if got_c >= quotas[code]:
                break
            got_c += take(c, "random")
    for code in present:  # what a crowded class could not place, others may
        for c in by_class[code]:
            if len(chosen) >= n:
                break
            take(c, "random")
    if len(chosen) < n:
        notes.append(f"{len(chosen)} of {n} points: no more pixels at least "
                     f"{min_distance_m:g} m apart (lower --min_distance_m)")
    index = {id(c): i for i, c in enumerate(pool)}
    names = {c.code: c.name for c in schema.classes}
    records = [{"id": k, "label": None, "map_class": c.code,
                "map_class_name": names.get(c.code, str(c.code)),
                "uncertainty": None if math.isnan(c.uncertainty) else round(c.uncertainty, 4),
                "strategy": why,
                "source": Path(maps[c.map_index]).name}
               for k, (c, why) in enumerate(chosen)]
    geoms = [Point(*lonlat[index[id(c)]]) for c, _ in chosen]
    return gpd.GeoDataFrame(records, geometry=geoms, crs=4326), notes


def olofsson_points(class_map: Path, schema: ClassSchema, users_accuracy: float = 0.8,
                    target_se_overall: float = 0.01, seed: int = 0) -> Any:
    """The area-estimation sample of ``sample-points`` in the suggestions' fields.

    Its size follows the target standard error (Olofsson et al. 2014), not ``n``; each
    point's uncertainty is read from the confidence COG where there is one.
    """
    import tempfile

    import geopandas as gpd

    from serving.baseline.sampling import draw_sample

    with tempfile.TemporaryDirectory(prefix="cacaomap-olofsson-") as tmp:
        frame = gpd.read_file(draw_sample(class_map, Path(tmp) / "sample.geojson", schema,
                                          users_accuracy, target_se_overall, seed))
    names = {c.code: c.name for c in schema.classes}
    uncertainty: list[float | None] = [None] * len(frame)
    conf_path = confidence_path(class_map)
    if conf_path.exists() and len(frame):
        with rasterio.open(conf_path) as src:
            pts = frame.to_crs(src.crs).geometry
            stored = [int(v[0]) for v in src.sample(zip(pts.x, pts.y, strict=True))]
        uncertainty = [None if v == CONFIDENCE_NODATA else round(1 - v / CONFIDENCE_SCALE, 4)
                       for v in stored]
    out = gpd.GeoDataFrame({
        "id": range(len(frame)), "label": [None] * len(frame),
        "map_class": frame["map_class"].astype(int),
        "map_class_name": [names.get(int(c), str(c)) for c in frame["map_class"]],
        "uncertainty": uncertainty, "strategy": "olofsson",
        "source": Path(class_map).name}, geometry=frame.geometry.values, crs=4326)
    return out
