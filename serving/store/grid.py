"""The store's cells: a fixed grid of square cells in each UTM zone a region touches.

Every zone has one pixel lattice: pixel (0, 0) has its upper-left corner at easting 0,
northing :data:`LATTICE_TOP` (10,000 km, the southern hemisphere's false northing), at
the store's resolution. Cells are ``cell_px`` square blocks of that lattice, so cells of
one zone tile it without gaps or overlaps and any window of a zone can be assembled
from the cells it touches (:mod:`serving.store.reader`). A region crossing a zone
boundary gets cells in both zones; each zone answers for the part of the region (and
of each plot) inside its 6-degree band of longitude, so nothing is counted twice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep

#: Northing of the lattice's top edge in every zone (metres).
LATTICE_TOP = 10_000_000.0


class GridError(ValueError):
    """A region or grid that cannot be cut into cells."""


@dataclass(frozen=True)
class Zone:
    """A UTM zone: its number, hemisphere and band of longitude."""

    number: int
    south: bool

    @property
    def epsg(self) -> int:
        """EPSG code of the zone's WGS 84 / UTM CRS."""
        return (32700 if self.south else 32600) + self.number

    @property
    def crs(self) -> str:
        """The CRS as ``EPSG:NNNNN``."""
        return f"EPSG:{self.epsg}"

    @property
    def name(self) -> str:
        """``18S`` style name (hemisphere letter, not the latitude band)."""
        return f"{self.number}{'S' if self.south else 'N'}"

    @property
    def band(self) -> tuple[float, float]:
        """(west, east) longitudes of the zone."""
        west = -180.0 + (self.number - 1) * 6.0
        return west, west + 6.0

    def band_polygon(self) -> BaseGeometry:
        """The zone's band of longitude as a lon/lat polygon."""
        west, east = self.band
        return box(west, -90.0, east, 90.0)


def lattice(resolution: float) -> Affine:
    """The transform of a zone's pixel lattice at ``resolution`` metres."""
    return Affine(resolution, 0.0, 0.0, 0.0, -resolution, LATTICE_TOP)


def zone_of(lon: float, lat: float) -> Zone:
    """The UTM zone of a point (the regular zones; no Norway/Svalbard exceptions)."""
    number = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return Zone(number, lat < 0)


@dataclass(frozen=True)
class Cell:
    """One cell of a zone's lattice.

    Attributes:
        id: ``<zone>_<column>_<row>`` of the cell in its zone's grid of cells.
        zone: Zone number.
        south: Southern hemisphere.
        row_off: First lattice row.
        col_off: First lattice column.
        size: Side in pixels.
        resolution: Pixel size in metres.
    """

    id: str
    zone: int
    south: bool
    row_off: int
    col_off: int
    size: int
    resolution: float

    @property
    def utm(self) -> Zone:
        """The cell's zone."""
        return Zone(self.zone, self.south)

    @property
    def transform(self) -> Affine:
        """Geotransform of the cell's rasters."""
        return lattice(self.resolution) * Affine.translation(self.col_off, self.row_off)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the zone's CRS."""
        t = self.transform
        return (t.c, t.f - self.size * self.resolution, t.c + self.size * self.resolution,
                t.f)

    def to_dict(self) -> dict[str, Any]:
        """As recorded in ``store.json``."""
        return asdict(self) | {"crs": self.utm.crs, "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """From ``store.json``."""
        return cls(str(data["id"]), int(data["zone"]), bool(data["south"]),
                   int(data["row_off"]), int(data["col_off"]), int(data["size"]),
                   float(data["resolution"]))


def to_zone(geom: BaseGeometry, zone: Zone) -> BaseGeometry:
    """A lon/lat geometry in the zone's CRS."""
    return from_lonlat([geom], zone.crs)[0]


def from_lonlat(geoms: list[BaseGeometry], crs: str) -> list[BaseGeometry]:
    """Lon/lat geometries in ``crs``: one transformer, every vertex in one call."""
    forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    out = shapely.transform(np.asarray(geoms, dtype=object), lambda xy: np.column_stack(
        forward.transform(xy[:, 0], xy[:, 1])))
    return list(out)


def to_lonlat(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """A geometry in ``crs`` in longitude/latitude."""
    back = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(
        back.transform(xy[:, 0], xy[:, 1])))


def zones_of(region: BaseGeometry) -> list[Zone]:
    """The zones whose band the region enters (hemisphere of the region's centre)."""
    west, _, east, _ = region.bounds
    south = region.centroid.y < 0
    first, last = zone_of(west, 0).number, zone_of(min(east, 179.999999), 0).number
    zones = [Zone(n, south) for n in range(first, last + 1)]
    return [z for z in zones if region.intersects(z.band_polygon())]


def plan_cells(region: BaseGeometry, cell_size_m: float, resolution: float) -> list[Cell]:
    """The cells that cover a lon/lat region, zone by zone.

    Args:
        region: The region in longitude/latitude (Polygon or MultiPolygon).
        cell_size_m: Cell side in metres (a whole number of pixels).
        resolution: Pixel size in metres.

    Raises:
        GridError: An empty region, or a cell size that is not whole pixels.
    """
    if region.is_empty or region.area == 0:
        raise GridError("the region is empty")
    size = cell_size_m / resolution
    if not (resolution > 0 and size >= 1 and abs(size - round(size)) < 1e-9):
        raise GridError(f"the cell size ({cell_size_m} m) must be a whole number of "
                        f"pixels of {resolution} m")
    size = round(size)
    cells = []
    for zone in zones_of(region):
        part = to_zone(region.intersection(zone.band_polygon()), zone)
        left, bottom, right, top = part.bounds
        cols = range(math.floor(left / cell_size_m),
                     math.floor(right / cell_size_m) + 1)
        rows = range(math.floor((LATTICE_TOP - top) / cell_size_m),
                     math.floor((LATTICE_TOP - bottom) / cell_size_m) + 1)
        prepared = prep(part)
        for i in rows:
            for j in cols:
                footprint = box(j * cell_size_m, LATTICE_TOP - (i + 1) * cell_size_m,
                                (j + 1) * cell_size_m, LATTICE_TOP - i * cell_size_m)
                if prepared.intersects(footprint) and part.intersection(footprint).area > 0:
                    cells.append(Cell(f"{zone.name}_{j:04d}_{i:05d}", zone.number,
                                      zone.south, i * size, j * size, size, resolution))
    return cells


def footprint_lonlat(cell: Cell) -> BaseGeometry:
    """The cell's footprint in longitude/latitude (densified edges)."""
    outline = box(*cell.bounds).segmentize(cell.size * cell.resolution / 8)
    return to_lonlat(outline, cell.utm.crs)
