"""Ground areas of raster pixels, in square metres, whatever the CRS.

A projected CRS's grid cell is not a ground cell: the projection's areal scale factor
(UTM: up to ±0.1% across a zone) converts one into the other. A geographic CRS's cells
shrink with latitude and are measured on the ellipsoid. A raster without a CRS has no
ground area at all, and asking for one is an error, never a guess.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS, Geod, Proj, Transformer
from rasterio.crs import CRS as RioCRS

M2_PER_HA = 10_000.0
#: Areal scale factors are evaluated on a lattice this many pixels apart (they vary
#: by ~1e-7 per kilometre in UTM, far below what this sampling could miss).
LATTICE = 64


class AreaError(ValueError):
    """The raster's georeferencing does not allow ground areas."""


def _crs(crs: RioCRS | CRS | str | None) -> CRS:
    if crs is None or not str(crs):
        raise AreaError("the raster has no CRS: its pixels have no known ground area")
    return CRS.from_user_input(crs.to_wkt() if isinstance(crs, RioCRS) else crs)


def check_transform(transform: Affine) -> None:
    """Refuse rotated/sheared or degenerate geotransforms.

    Raises:
        AreaError: Naming the problem.
    """
    if transform.b != 0 or transform.d != 0:
        raise AreaError("rotated or sheared geotransforms are not supported; warp north-up first")
    if transform.a == 0 or transform.e == 0:
        raise AreaError("the geotransform has a zero pixel size")
    if transform == Affine.identity():
        raise AreaError("the raster has no geotransform (identity transform)")


#: Slack on the ±90° / 360° checks of geographic rasters (edges of global grids).
DEGREE_SLACK = 1e-6


def check_georeferencing(crs: RioCRS | CRS | str | None, transform: Affine, height: int,
                         width: int) -> None:
    """Refuse georeferencing no place on Earth has, before anything is measured with it.

    A geographic raster must lie within ±90° of latitude and span at most 360° of
    longitude; a projected raster's corners must map to finite geographic coordinates;
    the geotransform must be finite. Without this, areas come out NaN or infinite and
    comparisons with them are silently false.

    Raises:
        AreaError: ``impossible georeferencing: ...`` naming the offending value.
    """
    if not all(math.isfinite(v) for v in tuple(transform)[:6]):
        raise AreaError(f"impossible georeferencing: the geotransform {tuple(transform)[:6]} "
                        "is not finite")
    crs_ = _crs(crs)
    xs = (transform.c, transform.c + transform.a * width)
    ys = (transform.f, transform.f + transform.e * height)
    if crs_.is_geographic:
        for lat in ys:
            if abs(lat) > 90 + DEGREE_SLACK:
                raise AreaError(f"impossible georeferencing: latitude {lat:g} is beyond "
                                "±90°")
        if abs(xs[1] - xs[0]) > 360 + DEGREE_SLACK or max(map(abs, xs)) > 540:
            raise AreaError(f"impossible georeferencing: longitudes {xs[0]:g} to "
                            f"{xs[1]:g} are not on Earth")
        return
    to_geo = Transformer.from_crs(crs_, crs_.geodetic_crs, always_xy=True)
    lon, lat = to_geo.transform([xs[0], xs[1], xs[0], xs[1]], [ys[0], ys[0], ys[1], ys[1]],
                                errcheck=False)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise AreaError(f"impossible georeferencing: corners {xs} x {ys} are outside "
                        f"the domain of {crs_.name}")


def pixel_areas(
    crs: RioCRS | CRS | str | None, transform: Affine, height: int, width: int,
    row_offset: int = 0,
) -> NDArray[np.float64]:
    """Ground area (m²) of each pixel of rows ``row_offset .. row_offset + height``.

    Args:
        crs: The raster's CRS.
        transform: The raster's (north-up) geotransform.
        height: Rows wanted.
        width: Raster width.
        row_offset: First row wanted (for strip-wise processing).

    Returns:
        (height, width) array of square metres.

    Raises:
        AreaError: Without a CRS, or with a rotated or degenerate transform.
    """
    crs_ = _crs(crs)
    check_transform(transform)
    check_georeferencing(crs_, transform, row_offset + height, width)
    rows = np.arange(row_offset, row_offset + height) + 0.5
    if crs_.is_geographic:
        geod = crs_.get_geod() or Geod(ellps="WGS84")
        lon0 = transform.c
        # Clipped: rounding can put a global grid's edge a hair beyond a pole (NaN).
        top = np.clip(transform.f + transform.e * (rows - 0.5), -90.0, 90.0)
        bottom = np.clip(top + transform.e, -90.0, 90.0)
        lon1 = lon0 + abs(transform.a)
        areas = np.array([
            abs(geod.polygon_area_perimeter([lon0, lon1, lon1, lon0], [t, t, b, b])[0])
            for t, b in zip(top, bottom, strict=True)
        ])
        return np.repeat(areas[:, None], width, axis=1)
    if not crs_.is_projected:
        raise AreaError(f"CRS {crs_.name!r} is neither projected nor geographic")
    unit = crs_.axis_info[0].unit_conversion_factor  # metres per CRS unit
    grid_area = abs(transform.a * transform.e) * unit**2
    # Areal scale on a coarse lattice, nearest-upsampled to pixels.
    lat_rows = rows[:: LATTICE] if height > LATTICE else rows[[height // 2]]
    cols = np.arange(0, width, LATTICE) + min(LATTICE, width) / 2
    cc, rr = np.meshgrid(cols, lat_rows)
    x = transform.c + transform.a * cc
    y = transform.f + transform.e * rr
    to_geo = Transformer.from_crs(crs_, crs_.geodetic_crs, always_xy=True)
    lon, lat = to_geo.transform(x, y)
    factors = Proj(crs_).get_factors(lon, lat, errcheck=False)
    scale = np.asarray(factors.areal_scale, np.float64).reshape(cc.shape)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    r_idx = np.minimum((np.arange(height)) // LATTICE, scale.shape[0] - 1)
    c_idx = np.minimum(np.arange(width) // LATTICE, scale.shape[1] - 1)
    return grid_area / scale[np.ix_(r_idx, c_idx)]


def ground_pixel_size(
    crs: RioCRS | CRS | str | None, transform: Affine, height: int, width: int,
) -> float | None:
    """Side in metres of the ground square of the raster's central pixel (None: no CRS)."""
    if crs is None:
        return None
    try:
        area = pixel_areas(crs, transform, 1, width, row_offset=height // 2)[0, width // 2]
    except AreaError:
        return None
    return float(np.sqrt(area))


def class_hectares(
    classes: NDArray[np.integer], areas_m2: NDArray[np.floating], num_classes: int
) -> NDArray[np.float64]:
    """Hectares per class code (bincount weighted by pixel ground area)."""
    return np.bincount(
        classes.ravel(), weights=areas_m2.ravel(), minlength=num_classes
    )[:num_classes] / M2_PER_HA
