"""Rasters as browser images: Web Mercator PNGs with their latitude/longitude bounds.

Leaflet (and every web map) stretches an image overlay linearly between its corner
coordinates in Web Mercator, so a raster in any CRS is warped to EPSG:3857 first; the
bounds are then given as (south, west, north, east) degrees. Class maps use nearest
resampling and the schema's colours (nodata transparent); scenes become an RGB composite
(B04, B03, B02) stretched between the 2nd and 98th percentiles of valid pixels.
Images are limited to ``max_side`` pixels per side, so a full Sentinel-2 tile becomes a
picture a phone can show.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.transform import Affine, array_bounds
from rasterio.warp import calculate_default_transform, reproject, transform_bounds

from serving.bands import TRUE_COLOUR
from serving.classes import ClassSchema
from serving.inference.validity import observed

WEB_MERCATOR = CRS.from_epsg(3857)
#: Longest side of a browser image, in pixels.
DEFAULT_MAX_SIDE = 2048
RGB_BANDS = TRUE_COLOUR
#: A radar-only scene's picture: red VV, green VH, blue VH/VV (all dB).
RADAR_PICTURE = ("VV_mean_db", "VH_mean_db", "VHVV_ratio_db")


class BrowserMapError(ValueError):
    """A raster that cannot be placed on a web map (no CRS)."""


@dataclass
class WebImage:
    """A PNG for the browser and where it goes.

    Attributes:
        png: The PNG bytes (RGBA).
        bounds: ``[[south, west], [north, east]]`` in degrees (Leaflet's order).
    """

    png: bytes
    bounds: list[list[float]]

    def save(self, path: str | Path) -> Path:
        """Write the PNG."""
        Path(path).write_bytes(self.png)
        return Path(path)


def _warp_to_mercator(
    data: NDArray[np.generic], crs: CRS | None, transform: Affine, nodata: float | None,
    resampling: Resampling, max_side: int,
) -> tuple[NDArray[np.generic], NDArray[np.bool_], Affine]:
    """Warp (bands, H, W) to EPSG:3857; return data, valid mask and transform."""
    if crs is None:
        raise BrowserMapError("the raster has no CRS: it cannot be placed on a map")
    count, height, width = data.shape
    dst_transform, dst_w, dst_h = calculate_default_transform(
        crs, WEB_MERCATOR, width, height, *array_bounds(height, width, transform))
    scale = max(dst_w, dst_h) / max_side
    if scale > 1:
        dst_w, dst_h = max(1, round(dst_w / scale)), max(1, round(dst_h / scale))
        dst_transform = dst_transform * Affine.scale(scale)
    out = np.zeros((count, dst_h, dst_w), data.dtype)
    valid = np.zeros((dst_h, dst_w), np.uint8)
    src_valid = np.asarray(observed(data, nodata), np.uint8)
    common = {"src_transform": transform, "src_crs": crs, "dst_transform": dst_transform,
              "dst_crs": WEB_MERCATOR}
    reproject(data, out, resampling=resampling, **common)
    reproject(src_valid, valid, resampling=Resampling.nearest, dst_nodata=0, **common)
    return out, valid.astype(bool), dst_transform


def _bounds(transform: Affine, height: int, width: int) -> list[list[float]]:
    west, south, east, north = transform_bounds(
        WEB_MERCATOR, "EPSG:4326", *array_bounds(height, width, transform))
    return [[south, west], [north, east]]


def _png(rgba: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def class_map_image(path: str | Path, schema: ClassSchema,
                    max_side: int = DEFAULT_MAX_SIDE) -> WebImage:
    """A class map (one band of codes) in the schema's colours; nodata transparent."""
    with rasterio.open(path) as src:
        codes = src.read(1)
        crs, transform = src.crs, src.transform
    warped, valid, dst = _warp_to_mercator(codes[None], crs, transform, schema.nodata,
                                           Resampling.nearest, max_side)
    lut = np.zeros((256, 4), np.uint8)
    for entry in schema.classes:
        if entry.code != schema.nodata:
            lut[entry.code] = (*entry.rgb, 255)
    rgba = lut[warped[0].astype(np.uint8)]
    rgba[~valid] = 0
    return WebImage(_png(rgba), _bounds(dst, *warped.shape[1:]))


def picture_bands(descriptions: Sequence[str | None], bands: Sequence[str]
                  ) -> tuple[list[int], str]:
    """Which of a scene's bands (1-based) make its picture, and what the picture is.

    True colour where the scene has B04, B03 and B02 (found by the file's band
    descriptions, else in the model's band order); for a radar-only scene the usual
    Sentinel-1 false colour (VV, VH, VH/VV in dB); else the first bands in grey.
    """
    for names in (list(descriptions), list(bands)):
        if all(b in names for b in RGB_BANDS):
            return [names.index(b) + 1 for b in RGB_BANDS], "true colour (B04, B03, B02)"
    for names in (list(descriptions), list(bands)):
        if all(b in names for b in RADAR_PICTURE):
            return ([names.index(b) + 1 for b in RADAR_PICTURE],
                    "radar false colour (VV, VH, VH/VV in dB)")
    count = len(descriptions) or len(bands)
    return ([1, 1, 1] if count < 3 else [3, 2, 1]), "first bands"


def rgb_image(src: DatasetReader, bands: list[str], nodata: float | None,
              max_side: int = DEFAULT_MAX_SIDE) -> WebImage:
    """An open scene's true-colour composite, percentile-stretched; nodata transparent.

    Takes an open dataset (an upload is opened from memory with the GTiff driver only);
    large scenes are decimated while reading.
    """
    indexes, _ = picture_bands(tuple(src.descriptions or ()), bands)
    crs = src.crs
    step = max(1, int(np.ceil(max(src.width, src.height) / (2 * max_side))))
    shape = (3, -(-src.height // step), -(-src.width // step))
    data = src.read(indexes, out_shape=shape, resampling=Resampling.nearest)
    transform = src.transform * Affine.scale(src.width / shape[2], src.height / shape[1])
    warped, valid, dst = _warp_to_mercator(data, crs, transform, nodata,
                                           Resampling.bilinear, max_side)
    rgba = np.zeros((*warped.shape[1:], 4), np.uint8)
    if valid.any():
        for i in range(3):
            band = warped[i].astype(np.float64)
            low, high = np.percentile(band[valid], (2, 98))
            scaled = (band - low) / max(high - low, 1e-9)
            rgba[..., i] = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(valid, 255, 0)
    return WebImage(_png(rgba), _bounds(dst, *warped.shape[1:]))
