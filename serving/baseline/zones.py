"""Zones (farm plots, concessions) for the baseline: read, validate, check coverage.

A service upload is parsed as GeoJSON text by this module (``json`` + shapely), never
handed to GDAL/OGR, which would sniff the format and could follow an OGR VRT to local
files. Local files given on the command line may be any format GDAL reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from rasterio.transform import array_bounds
from shapely.geometry import box, shape
from shapely.validation import explain_validity

#: CRS of GeoJSON without a legacy ``crs`` member (RFC 7946).
GEOJSON_CRS = "EPSG:4326"
#: Most vertices over all zones (validation, reprojection and exactextract scale with
#: them): 10,000 plots of 100 vertices. ``CACAOMAP_MAX_ZONE_VERTICES`` in the service.
DEFAULT_MAX_ZONE_VERTICES = 1_000_000


class ZoneError(ValueError):
    """Zones that cannot be used; the message names the zone and the problem."""


def zones_from_geojson(data: bytes, name: str = "zones",
                       max_vertices: int = DEFAULT_MAX_ZONE_VERTICES) -> Any:
    """Parse GeoJSON bytes (FeatureCollection, Feature or bare geometry) into a frame.

    A legacy ``"crs": {"properties": {"name": ...}}`` member is honoured; otherwise the
    coordinates are WGS 84 longitude/latitude.

    Raises:
        ZoneError: If the bytes are not GeoJSON or a feature has no usable geometry.
    """
    import geopandas as gpd

    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZoneError(f"{name}: not GeoJSON text ({err})") from err
    except RecursionError as err:
        raise ZoneError(f"{name}: JSON nested too deeply to be GeoJSON") from err
    if not isinstance(doc, dict) or "type" not in doc:
        raise ZoneError(f"{name}: not a GeoJSON object (no 'type')")
    kind = doc["type"]
    if kind == "FeatureCollection":
        features = doc.get("features")
    elif kind == "Feature":
        features = [doc]
    else:
        features = [{"type": "Feature", "geometry": doc, "properties": {}}]
    if not isinstance(features, list):
        raise ZoneError(f"{name}: 'features' must be a list")
    crs = GEOJSON_CRS
    legacy = doc.get("crs")
    if isinstance(legacy, dict) and isinstance(legacy.get("properties"), dict):
        crs = str(legacy["properties"].get("name", GEOJSON_CRS))
    rows, geoms = [], []
    vertices = 0
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise ZoneError(f"{name}: feature {i} has no geometry")
        try:
            geom = shape(feature["geometry"])
        except Exception as err:  # shapely raises several types for malformed input
            raise ZoneError(f"{name}: feature {i} has a malformed geometry ({err})") from err
        vertices += int(shapely.get_num_coordinates(geom))
        _check_vertices(vertices, max_vertices, name)
        geoms.append(geom)
        props = feature.get("properties")
        rows.append(props if isinstance(props, dict) else {})
    try:
        return gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)
    except Exception as err:  # pyproj's CRSError for an unknown CRS name
        raise ZoneError(f"{name}: unusable CRS {crs!r} ({err})") from err


def read_zones(path: str | Path, geojson_only: bool = False,
               max_vertices: int = DEFAULT_MAX_ZONE_VERTICES) -> Any:
    """Zones from a file, validated by :func:`validate_zones`.

    Args:
        path: GeoJSON (or, unless ``geojson_only``, any vector format GDAL reads).
        geojson_only: Parse as GeoJSON text without GDAL (for uploads).
        max_vertices: Most vertices over all zones.
    """
    path = Path(path)
    if geojson_only:
        zones = zones_from_geojson(path.read_bytes(), path.name, max_vertices)
    else:
        import geopandas as gpd

        zones = gpd.read_file(path)
    return validate_zones(zones, path.name, max_vertices)


def _check_vertices(vertices: int, max_vertices: int, name: str) -> None:
    if vertices > max_vertices:
        raise ZoneError(f"{name}: the zones have more than {max_vertices:,} vertices "
                        "(simplify them or split the file)")


def validate_zones(zones: Any, name: str = "zones",
                   max_vertices: int = DEFAULT_MAX_ZONE_VERTICES) -> Any:
    """Refuse empty zone sets, missing CRS, non-polygons and invalid polygons.

    A self-intersecting plot boundary is refused rather than repaired: the repaired
    shape is a guess, and a verdict about a guessed plot is not worth having.

    Raises:
        ZoneError: Naming the zone and the problem.
    """
    if zones.empty:
        raise ZoneError(f"{name}: no zones")
    if zones.crs is None:
        raise ZoneError(f"{name}: zones have no CRS")
    _check_vertices(int(shapely.get_num_coordinates(zones.geometry.values).sum()),
                    max_vertices, name)
    for i, geom in enumerate(zones.geometry):
        if geom is None or geom.is_empty:
            raise ZoneError(f"{name}: zone {i} has an empty geometry")
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            hint = (" (farm plots declared as points with an Area are checked by "
                    "`cacaomap plots check` and POST /plots)" if "Point" in geom.geom_type
                    else "")
            raise ZoneError(f"{name}: zone {i} is a {geom.geom_type}; zones must be "
                            f"polygons{hint}")
        if not geom.is_valid:
            raise ZoneError(f"{name}: zone {i} is not a valid polygon: "
                            f"{explain_validity(geom)}")
    return zones


def check_overlap(zones: Any, crs: Any, transform: Any, height: int, width: int) -> None:
    """Refuse zones of which none overlaps the raster's footprint.

    Raises:
        ZoneError: With both extents, in the raster's CRS.
    """
    footprint = box(*array_bounds(height, width, transform))
    projected = zones.to_crs(crs)
    if not np.asarray(projected.intersects(footprint)).any():
        raise ZoneError(
            f"none of the {len(zones)} zones overlaps the class maps: zones span "
            f"{[round(v) for v in projected.total_bounds]}, the maps "
            f"{[round(v) for v in footprint.bounds]} ({crs})")
