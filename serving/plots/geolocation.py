"""Plot geolocation as the EU deforestation regulation has it declared, plot by plot.

A statement's GeoJSON holds Points (plots of up to 4 ha may be declared as one point,
with their ``Area`` in hectares), Polygons, MultiPolygons, and GeometryCollections of
them, in WGS 84 longitude/latitude, with producer properties (``ProducerName``,
``ProducerCountry``, ``ProductionPlace``, ``Area``) that are kept as they came.

Each feature becomes a :class:`Plot`: the geometry that will be checked, how it was
made (``geometry_used``), flags, or an error that belongs to that plot alone. Only a
body that is not GeoJSON at all, or over the limits, raises :class:`PlotsError`.

- A point with ``Area`` is checked over a geodesic circle of that area centred on it
  (``circle from Area``); without ``Area``, over ``point_area_ha`` (4 ha by default,
  as the EU's information system assumes for a point without it), flagged
  ``area_missing``. A point declaring more than 4 ha is flagged ``polygon_required``
  (the regulation wants a polygon there).
- A polygon whose declared ``Area`` differs from its own geodesic area by more than
  :data:`AREA_MISMATCH` (and 0.1 ha) is flagged ``area_mismatch``; a declared or
  measured area over :data:`IMPLAUSIBLE_FARM_HA` is flagged ``implausible_area`` (a
  pipeline that put m² where hectares belong declares 10,000 times the plot).
- Coordinates with fewer than 6 decimals (the regulation's precision, about 0.1 m)
  are flagged ``low_precision``. From text, decimals are counted as written
  (``-8.100000`` has 6); from an already parsed object, from the shortest form of the
  number (``-8.1``), so trailing zeros cannot be seen there.
- A plot over ``max_plot_ha`` (declared or measured) is that plot's error, and a body
  made only of such plots is refused: the work of one request stays bounded.
- A broken geometry (self-intersecting ring, coordinates outside longitude/latitude,
  a LineString, no geometry) gives that plot ``error`` with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from serving import json_bodies

#: Largest plot the regulation lets one declare as a single point, in hectares.
POINT_MAX_HA = 4.0
#: Area checked around a point that declares none: the EU information system's 4 ha.
DEFAULT_POINT_AREA_HA = 4.0
#: Relative difference between a polygon's declared Area and its own area that is flagged.
AREA_MISMATCH = 0.25
#: Larger than any one farm plot of a due-diligence statement (hectares): flagged.
IMPLAUSIBLE_FARM_HA = 5_000.0
#: Deepest nesting of arrays and objects a feature may have (a MultiPolygon's
#: coordinates are 4 deep; producer properties rarely 3): deeper is that plot's error,
#: found by an iterative walk (no recursion to exhaust, nothing to write back).
MAX_DEPTH = 32
#: The largest plot checked (hectares; ``CACAOMAP_MAX_PLOT_HA``): a larger one is that
#: plot's error, found before any circle is built or any window read, so one plot's
#: work is bounded (1,000 ha: a window of about 3,200² pixels at 10 m).
MAX_PLOT_HA = 1_000.0
#: Decimals the regulation asks coordinates to carry.
MIN_DECIMALS = 6
#: Vertices of the polygon that stands for a point's circle.
CIRCLE_VERTICES = 64
#: Property names read as the declared area in hectares (EUDR: ``Area``).
AREA_KEYS = ("Area", "area", "AREA", "area_ha")
#: Property names read as the plot's id, before the feature's own ``id``.
ID_KEYS = ("plot_id", "PlotID", "PlotId", "plotId")
#: Most plots in one statement (the EU information system's limit).
DEFAULT_MAX_PLOTS = 10_000

GEOD = Geod(ellps="WGS84")


class PlotsError(ValueError):
    """A plots body that cannot be read at all (not GeoJSON, over the limits)."""


@dataclass
class Plot:
    """One declared plot, ready to be checked (or carrying its own error).

    Attributes:
        index: Position of the feature in the input.
        plot_id: The plot's id (a property, the feature id, or the index).
        feature: The input feature as given; its properties are never changed.
        geometry: What is checked, in longitude/latitude (None with an error).
        geometry_used: ``polygon``, ``circle from Area`` or ``circle of default area``.
        declared_ha: The ``Area`` property, if any.
        area_ha: Geodesic area of ``geometry``.
        flags: Remarks that do not stop the check (``area_missing``, ...).
        error: Why this plot cannot be checked, or None.
    """

    index: int
    plot_id: str
    feature: dict[str, Any]
    geometry: BaseGeometry | None = None
    geometry_used: str = "polygon"
    declared_ha: float | None = None
    area_ha: float = 0.0
    flags: list[str] = field(default_factory=list)
    error: str | None = None


def read_plots(data: bytes | str | dict[str, Any], *, name: str = "plots",
               point_area_ha: float = DEFAULT_POINT_AREA_HA, max_plots: int = DEFAULT_MAX_PLOTS,
               max_plot_ha: float = MAX_PLOT_HA,
               max_vertices: int = 1_000_000) -> list[Plot]:
    """Parse a plots body into plots; only an unreadable body raises.

    Args:
        data: GeoJSON text or bytes (decimals counted as written), or a parsed object.
        name: What the body is called in messages.
        point_area_ha: Area checked around a point that declares none.
        max_plot_ha: The largest plot checked (a larger one is that plot's error).
        max_plots: Most features accepted.
        max_vertices: Most vertices over all features.

    Raises:
        PlotsError: Not GeoJSON, no features, or over a limit.
    """
    if not point_area_ha > 0:
        raise PlotsError(f"the default point area must be positive; got {point_area_ha}")
    if point_area_ha > max_plot_ha:
        raise PlotsError(f"the default point area {point_area_ha:,g} ha is over the largest "
                         f"plot checked, {max_plot_ha:,g} ha")
    doc = _parse(data, name) if isinstance(data, bytes | str) else data
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise PlotsError(f"{name}: not a GeoJSON object (no 'type')")
    if doc["type"] == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise PlotsError(f"{name}: 'features' must be a list")
    elif doc["type"] == "Feature":
        features = [doc]
    elif doc["type"] in GEOMETRY_TYPES:
        features = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise PlotsError(f"{name}: a GeoJSON {doc['type']!r} is not a plot or a "
                         "FeatureCollection of plots")
    if not features:
        raise PlotsError(f"{name}: no plots (an empty FeatureCollection)")
    if len(features) > max_plots:
        raise PlotsError(f"{name}: {len(features):,} plots, over the limit of "
                         f"{max_plots:,} (split the statement)")
    legacy = doc.get("crs")
    if isinstance(legacy, dict):
        crs_name = str((legacy.get("properties") or {}).get("name", ""))
        if crs_name and not crs_name.upper().endswith(("CRS84", "4326")):
            raise PlotsError(f"{name}: coordinates must be WGS 84 longitude/latitude "
                             f"(RFC 7946); the file declares {crs_name}")
    parsed = [_plot(i, feature, point_area_ha, max_plot_ha)
              for i, feature in enumerate(features)]
    # Vertices counted before any circle is built (each point becomes CIRCLE_VERTICES).
    expected = sum(int(shapely.get_num_coordinates(polygons).sum()) if polygons else 0
                   for _, polygons, _, _ in parsed)
    expected += CIRCLE_VERTICES * sum(len(points) for _, _, points, _ in parsed)
    if expected > max_vertices:
        raise PlotsError(f"{name}: the plots would have {expected:,} vertices, more than "
                         f"{max_vertices:,} (each point is a circle of {CIRCLE_VERTICES}; "
                         "simplify them or split the file)")
    # Every point's circle in one vectorised call (10,000 points: one Geod.fwd).
    centres = [(c, area) for _, _, points, area in parsed for c in points]
    circles = iter(circles_of_area([c for c, _ in centres], [a for _, a in centres]))
    plots, vertices = [], 0
    for plot, polygons, points, each in parsed:
        own = [next(circles) for _ in points]
        if plot.error is None:
            _finish(plot, polygons, own, each)
            if plot.area_ha > max_plot_ha:
                plot.error = _too_large(plot.area_ha, max_plot_ha)
                plot.geometry = None
        if plot.geometry is not None:
            vertices += int(shapely.get_num_coordinates(plot.geometry))
            if vertices > max_vertices:
                raise PlotsError(f"{name}: the plots have more than {max_vertices:,} "
                                 "vertices (simplify them or split the file)")
        plots.append(plot)
    if plots and all(p.error is not None and p.error.startswith(TOO_LARGE) for p in plots):
        raise PlotsError(f"{name}: every plot is over the largest plot checked "
                         f"({max_plot_ha:,g} ha): {plots[0].error}")
    return plots


#: How the error of a plot over the largest plot checked begins.
TOO_LARGE = "the plot is over the largest plot checked"


def _too_large(area_ha: float, max_plot_ha: float) -> str:
    return (f"{TOO_LARGE} ({area_ha:,.0f} ha > {max_plot_ha:,g} ha, CACAOMAP_MAX_PLOT_HA): "
            "an area in m² given as hectares, or a region rather than a plot?")


def _finish(plot: Plot, polygons: list[Polygon], circles: list[Polygon], each: float
            ) -> None:
    """The plot's geometry from its polygons and circles, and its area."""
    shapes = polygons + circles
    if len(shapes) == 1:
        plot.geometry = shapes[0]
    else:
        merged = shapely.union_all(shapes)
        plot.geometry = merged if merged.geom_type in ("Polygon", "MultiPolygon") else (
            MultiPolygon([g for g in getattr(merged, "geoms", []) if g.geom_type == "Polygon"]))
    if polygons:
        plot.area_ha = abs(GEOD.geometry_area_perimeter(plot.geometry)[0]) / 10_000
    else:  # circles only: their area is the declared one by construction
        plot.area_ha = each * len(circles)
    declared = plot.declared_ha
    if polygons and not circles and declared is not None and plot.area_ha > 0 and (
            abs(declared - plot.area_ha) > max(0.1, AREA_MISMATCH * plot.area_ha)):
        plot.flags.append("area_mismatch")
    if max(plot.area_ha, declared or 0.0) > IMPLAUSIBLE_FARM_HA:
        plot.flags.append("implausible_area")


GEOMETRY_TYPES = ("Point", "MultiPoint", "Polygon", "MultiPolygon", "GeometryCollection")


def _parse(data: bytes | str, name: str) -> Any:
    try:
        return json_bodies.loads(data, parse_float=Decimal)  # other threads run meanwhile
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PlotsError(f"{name}: not GeoJSON text ({err})") from err
    except RecursionError as err:
        raise PlotsError(f"{name}: JSON nested too deeply to be GeoJSON") from err


def _plot(index: int, feature: Any, point_area_ha: float, max_plot_ha: float = MAX_PLOT_HA
          ) -> tuple[Plot, list[Polygon], list[tuple[float, float]], float]:
    """One feature as a plot, its polygons, its points and each point's area.

    Every problem of the feature's own becomes the plot's ``error``.
    """
    if not isinstance(feature, dict):
        return Plot(index, str(index), {}, error="the feature is not a JSON object"), [], [], 0
    if nested_deeper_than(feature, MAX_DEPTH):
        stub: dict[str, Any] = {"type": "Feature", "geometry": None, "properties": {}}
        return Plot(index, str(index), stub, error=f"the feature is nested deeper than "
                    f"{MAX_DEPTH} levels (a plot's geometry and properties are not)"), [], [], 0
    raw_props = feature.get("properties")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
    plot = Plot(index, _plot_id(index, feature, props), feature)
    none: tuple[Plot, list[Polygon], list[tuple[float, float]], float] = (plot, [], [], 0)
    raw = feature.get("geometry")
    if not isinstance(raw, dict) or raw.get("type") not in GEOMETRY_TYPES:
        kind = raw.get("type") if isinstance(raw, dict) else None
        plot.error = (f"a {kind} is not a plot geometry (Point, Polygon, MultiPolygon)"
                      if kind else "the feature has no geometry")
        return none
    try:
        plot.declared_ha = _declared_area(props)
        floats, decimals = _floats_and_decimals(raw)
        geom = shape(floats)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            shapely.errors.GEOSException) as err:
        plot.error = f"malformed geometry or Area ({err})"
        return none
    if decimals is not None and decimals < MIN_DECIMALS:
        plot.flags.append("low_precision")
    if plot.declared_ha is not None and plot.declared_ha > max_plot_ha and (
            geom.geom_type in ("Point", "MultiPoint") or "Point" in str(raw.get("type"))):
        plot.error = _too_large(plot.declared_ha, max_plot_ha)  # before any circle
        return none
    if geom.is_empty:
        plot.error = "the geometry is empty"
        return none
    bounds = geom.bounds
    if not all(map(math.isfinite, bounds)) or not (
            -180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90):
        plot.error = (f"coordinates {[round(v, 6) for v in bounds]} are not "
                      "longitude/latitude (projected, or latitude and longitude swapped?)")
        return none
    try:
        polygons, points, each = _pieces(plot, geom, point_area_ha)
    except ValueError as err:
        plot.error = str(err)
        return none
    return plot, polygons, points, each


def nested_deeper_than(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests lists and dicts deeper than ``limit``, walked without recursion."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _plot_id(index: int, feature: dict[str, Any], props: dict[str, Any]) -> str:
    for key in ID_KEYS:
        if props.get(key) not in (None, ""):
            return str(props[key])
    if feature.get("id") not in (None, ""):
        return str(feature["id"])
    return str(index)


def _declared_area(props: dict[str, Any]) -> float | None:
    for key in AREA_KEYS:
        if key in props and props[key] not in (None, ""):
            try:
                value = float(props[key])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{key} must be a number of hectares; got "
                                 f"{props[key]!r}") from err
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a positive number of hectares; got "
                                 f"{props[key]!r}")
            return value
    return None


def _pieces(plot: Plot, geom: BaseGeometry, point_area_ha: float
            ) -> tuple[list[Polygon], list[tuple[float, float]], float]:
    """A geometry's valid polygons, its points, and the area each point stands for."""
    polygons, points = [], []
    for part in getattr(geom, "geoms", [geom]):
        members = getattr(part, "geoms", [part])  # a collection member may be multi
        for g in members:
            if g.geom_type == "Polygon":
                polygons.append(g)
            elif g.geom_type == "Point":
                points.append((g.x, g.y))
            else:
                raise ValueError(f"a {g.geom_type} is not a plot geometry (Point, "
                                 "Polygon, MultiPolygon)")
    for g in polygons:
        if not g.is_valid:
            raise ValueError(f"not a valid polygon: {explain_validity(g)}")
    each = 0.0
    if points:
        if plot.declared_ha is None:
            plot.flags.append("area_missing")
            each = point_area_ha
            plot.geometry_used = "circle of default area"
        else:
            each = plot.declared_ha / len(points)
            plot.geometry_used = "circle from Area"
            if plot.declared_ha > POINT_MAX_HA:
                plot.flags.append("polygon_required")
        if polygons:
            plot.geometry_used = f"polygons and {plot.geometry_used}"
    return polygons, points, each


def circles_of_area(centres: list[tuple[float, float]], areas_ha: list[float]
                    ) -> list[Polygon]:
    """Geodesic circles (polygons of :data:`CIRCLE_VERTICES`) of the given areas.

    The radius is chosen so that the polygon, not the circle it approximates, has the
    area: a 64-gon inscribed in a circle has 0.16 % less area than the circle.
    """
    if not centres:
        return []
    n = CIRCLE_VERTICES
    radii = np.sqrt(np.asarray(areas_ha, np.float64) * 10_000
                    / (n / 2 * math.sin(2 * math.pi / n)))
    lon = np.repeat([c[0] for c in centres], n)
    lat = np.repeat([c[1] for c in centres], n)
    azimuths = np.tile(np.linspace(0, 360, n, endpoint=False), len(centres))
    x, y, _ = GEOD.fwd(lon, lat, azimuths, np.repeat(radii, n))
    rings = np.stack([x, y], axis=1).reshape(len(centres), n, 2)
    # Azimuths run clockwise; GeoJSON exteriors are counter-clockwise.
    return [Polygon(ring[::-1]) for ring in rings]


def _floats_and_decimals(obj: Any) -> tuple[Any, int | None]:
    """The geometry with Decimals made floats, and the fewest decimals of any number.

    Decimals (parsed from text) count as written; floats (an object already parsed)
    by their shortest form.
    """
    fewest: list[int] = []

    def walk(item: Any) -> Any:
        if isinstance(item, Decimal):
            exponent = item.as_tuple().exponent
            fewest.append(-exponent if isinstance(exponent, int) and exponent < 0 else 0)
            return float(item)
        if isinstance(item, bool):
            return item
        if isinstance(item, int | float):
            text = repr(float(item))
            fewest.append(0 if "e" in text or "." not in text
                          else len(text.split(".")[1].rstrip("0")))
            return item
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {k: walk(v) if k in ("coordinates", "geometries") else v
                    for k, v in item.items()}
        return item

    converted = walk(obj)
    return converted, (min(fewest) if fewest else None)


def _as_floats(obj: Any) -> Any:
    """An object with Decimals made floats (shapely and json take numbers)."""
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, list):
        return [_as_floats(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _as_floats(v) for k, v in obj.items()}
    return obj


def json_ready(obj: Any) -> Any:
    """An input object with Decimals as floats again, for writing it back out."""
    return _as_floats(obj)
