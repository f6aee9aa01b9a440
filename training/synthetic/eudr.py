"""The synthetic plots as a statement declares them, and the region they lie in.

``plots_eudr.geojson`` holds the landscape's farm plots the way the EU information
system takes them: WGS 84 longitude/latitude at full precision, properties
``ProducerName``, ``ProducerCountry``, ``ProductionPlace`` and ``Area`` (ha), plots of
up to 4 ha as **one point** (the plot's centre) and larger ones as polygons.
``region.geojson`` is the landscape's footprint, the region a store is built for.
"""

from __future__ import annotations

import json
from pathlib import Path

from shapely.geometry import box, mapping

from serving.files import write_bytes_atomic
from serving.plots.geolocation import POINT_MAX_HA
from serving.store.grid import to_lonlat


def write_eudr_plots(plots: Path, out: Path) -> Path:
    """Write the plots of ``plots.geojson`` (any CRS) as an EUDR-style statement."""
    import geopandas as gpd

    frame = gpd.read_file(plots)
    areas = frame.geometry.area / 10_000  # a UTM frame: hectares
    lonlat = frame.to_crs(4326)
    features = []
    for i, (row, ha) in enumerate(zip(lonlat.itertuples(), areas, strict=True)):
        geom = row.geometry.centroid if ha <= POINT_MAX_HA else row.geometry
        features.append({
            "type": "Feature",
            "properties": {"ProducerName": f"Productor {i + 1:03d}",
                           "ProducerCountry": "PE", "ProductionPlace": "Tocache",
                           "Area": round(float(ha), 4), "plot_id": row.plot_id},
            "geometry": mapping(geom),
        })
    write_bytes_atomic(out, json.dumps({"type": "FeatureCollection",
                                        "features": features}).encode())
    return out


def write_region(crs: str, bounds: tuple[float, float, float, float], out: Path) -> Path:
    """Write the footprint ``bounds`` (in ``crs``) as a lon/lat GeoJSON region."""
    outline = box(*bounds).segmentize((bounds[2] - bounds[0]) / 16)
    region = to_lonlat(outline, crs)
    write_bytes_atomic(out, json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "synthetic landscape near Tocache"},
        "geometry": mapping(region)}]}).encode())
    return out
