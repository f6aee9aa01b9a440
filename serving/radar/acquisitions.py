"""Sentinel-1 acquisitions on disk, read onto another raster's grid in linear power.

An acquisition is one GeoTIFF with VV and VH bands, or a ``*_VV.tif`` whose
``*_VH.tif`` lies beside it (BigEarthNet's layout), or a VV-only file (pyroSAR's).
Bands are found by their descriptions (``VV``, ``VH``), else by a ``_VV``/``_VH`` name,
else by order (1 = VV, 2 = VH). A band described ``mask``, ``layover``, ``shadow`` or
``border`` marks pixels to drop (non-zero = drop), as RTC products ship them; the
file's nodata and non-positive power (the zeros of GRD border noise) are dropped too.

Values are read in the window of the source that covers the target block, converted
to linear power, and only then resampled onto the target grid (bilinear, or average
where the source is finer): resampling in dB would average logarithms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.errors import RasterioIOError
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from serving.radar.speckle import NO_SPECKLE_FILTER, Speckle
from serving.radar.units import Units, resolve_units, to_linear, units_from_tags

_DATE = re.compile(r"(20\d{2})(\d{2})(\d{2})T?\d{0,6}")
_DROP_WORDS = ("mask", "layover", "shadow", "border")
#: Linear power below this (-50 dB) is thermal/border noise, not backscatter.
NOISE_FLOOR = 1e-5


class RadarInputError(ValueError):
    """A radar file that cannot be read as Sentinel-1 backscatter; names the file."""


@dataclass(frozen=True)
class RadarFile:
    """One acquisition: where its VV (and VH, and drop mask) bands are, and in what units."""

    name: str
    vv: tuple[Path | str, int]
    vh: tuple[Path | str, int] | None
    mask: tuple[Path | str, int] | None
    units: Literal["linear", "db"]
    date: str | None
    #: A spatial speckle filter applied before the statistics (default: none).
    speckle: Speckle = NO_SPECKLE_FILTER


def _band_named(descriptions: tuple[str | None, ...], pol: str) -> int | None:
    for i, d in enumerate(descriptions, start=1):
        if d and re.search(rf"(^|[^a-z]){pol}([^a-z]|$)", d.lower()):
            return i
    return None


def describe(path: str | Path, units: Units = "auto") -> RadarFile:
    """Find an acquisition's bands and units, checking the units against its values.

    Raises:
        RadarInputError: No such file, not a raster, or no VV band.
        serving.radar.units.RadarUnitsError: Units contradicted by the values.
    """
    path = Path(path)
    try:
        src = rasterio.open(path)
    except (OSError, RasterioIOError) as err:
        raise RadarInputError(f"{path}: not a readable raster ({err})") from err
    with src:
        descriptions = src.descriptions or ()
        lower = path.name.lower()
        vv_band = _band_named(descriptions, "vv")
        vh_band = _band_named(descriptions, "vh")
        mask_band = next((i for i, d in enumerate(descriptions, start=1)
                          if d and any(w in d.lower() for w in _DROP_WORDS)), None)
        vh: tuple[Path | str, int] | None = None
        if vv_band is None and "_vh" in lower:
            raise RadarInputError(f"{path}: a VH file; give its VV file (the VH beside it "
                                  "is found)")
        if vv_band is None and ("_vv" in lower or src.count == 1):
            vv_band = 1
            twin = path.with_name(re.sub("_VV", "_VH", path.name, flags=re.IGNORECASE))
            if twin != path and twin.is_file():
                vh = (twin, 1)
        elif vv_band is None:
            vv_band = 1
            vh_band = vh_band or (2 if src.count >= 2 and mask_band != 2 else None)
        if vh is None and vh_band is not None:
            vh = (path, vh_band)
        sample = _sample(src, vv_band)
        said = units_from_tags(src.tags() | src.tags(vv_band), descriptions, path.name)
    resolved = resolve_units(sample, units, said, path.name)
    found = _DATE.search(path.name)
    date = "-".join(found.groups()) if found else None
    return RadarFile(path.name, (path, vv_band), vh,
                     (path, mask_band) if mask_band else None, resolved, date)


def _sample(src: Any, band: int, side: int = 256) -> NDArray[np.float32]:
    """Finite, non-nodata values of a decimated read of one band."""
    out_shape = (min(side, src.height), min(side, src.width))
    values = src.read(band, out_shape=out_shape, masked=True).astype(np.float32)
    return np.asarray(values.filled(np.nan))[np.isfinite(values.filled(np.nan))]


def read_onto(pair: tuple[Path | str, int], units: Literal["linear", "db"],
              mask: tuple[Path | str, int] | None, crs: Any, transform: Any, height: int,
              width: int, speckle: Speckle = NO_SPECKLE_FILTER) -> NDArray[np.float32]:
    """One band as linear power on a target block; NaN where it saw nothing usable.

    The window read reaches beyond the block by the resampling's reach and the speckle
    filter's halo, so a block's pixels do not depend on where the blocks are cut.

    Args:
        pair: (file, 1-based band).
        units: The band's units.
        mask: (file, band) of a drop mask (non-zero = drop), or None.
        crs: Target CRS.
        transform: Target block's transform.
        height: Target block's rows.
        width: Target block's columns.
        speckle: Spatial speckle filter, applied in the source's pixels.
    """
    path, band = pair
    margin = 2 + speckle.halo
    out = np.full((height, width), np.nan, np.float32)
    with rasterio.open(path) as src:
        bounds = rasterio.transform.array_bounds(height, width, transform)
        try:
            left, bottom, right, top = transform_bounds(crs, src.crs, *bounds, densify_pts=21)
        except (rasterio.errors.CRSError, ValueError):
            return out
        window = from_bounds(left, bottom, right, top, src.transform)
        window = Window(math.floor(window.col_off) - margin,
                        math.floor(window.row_off) - margin,
                        math.ceil(window.width) + 2 * margin + 1,
                        math.ceil(window.height) + 2 * margin + 1)
        try:
            window = window.intersection(Window(0, 0, src.width, src.height))
        except rasterio.errors.WindowError:
            return out  # this acquisition does not reach the block
        data = src.read(band, window=window, masked=True).astype(np.float32)
        values = np.asarray(data.filled(np.nan))
        if mask is not None:
            with rasterio.open(mask[0]) as m:
                drop = m.read(mask[1], window=window) != 0
            values[drop] = np.nan
        src_transform = src.window_transform(window)
        src_crs = src.crs
        finer = abs(src.res[0]) < 0.5 * abs(transform.a) if src_crs == crs else False
    linear = to_linear(values) if units == "db" else values
    linear = speckle.apply(np.where(np.isfinite(linear) & (linear > NOISE_FLOOR), linear,
                                    np.nan).astype(np.float32))
    reproject(linear, out, src_transform=src_transform, src_crs=src_crs,
              src_nodata=np.nan, dst_transform=transform, dst_crs=crs, dst_nodata=np.nan,
              resampling=Resampling.average if finer else Resampling.bilinear)
    return out


#: Asset keys of VV and VH in the STAC item shapes read: Planetary Computer's
#: ``sentinel-1-rtc`` and Earth Search's ``sentinel-1-grd`` both use ``vv``/``vh``.
STAC_ASSETS = {"vv": ("vv", "VV"), "vh": ("vh", "VH")}


def files_from_items(items: list[Any], units: Units = "auto", remote: bool = False,
                     sample: bool = True) -> list[RadarFile]:
    """Sentinel-1 STAC items as acquisitions (one per item, its ``vv`` and ``vh``).

    Planetary Computer's ``sentinel-1-rtc`` is gamma0 in linear power (its items say
    ``sar:product_type: GRD``, the product they were made from; the collection and the
    ``_rtc`` id say RTC); Earth Search's ``sentinel-1-grd`` is not terrain corrected
    (amplitude DN): calibrate it first. A GRD item that nothing marks as RTC is refused.
    An asset's ``raster:bands`` nodata (Planetary Computer: -32768) is left out of the
    units check, as the file's own nodata is.

    Args:
        items: pystac Items (signed where the archive needs it).
        units: As for files; ``auto`` reads the values (RTC items carry no unit tag).
        remote: Whether http(s)/s3 hrefs may be read (a search's items).
        sample: Check the units against a decimated read of each item's VV.

    Raises:
        RadarInputError: An item without a VV asset, or a GRD item.
        serving.imagery.hrefs.HrefError: An href imagery does not open.
    """
    from serving.imagery.hrefs import check_href

    out = []
    for item in items:
        if not is_rtc(item):
            raise RadarInputError(
                f"item {item.id}: a GRD product (not radiometrically terrain corrected): "
                "calibrate and terrain-correct it first, or use sentinel-1-rtc")
        first = {pol: next((k for k in keys if k in item.assets), None)
                 for pol, keys in STAC_ASSETS.items()}
        found = {pol: key for pol, key in first.items() if key is not None}
        hrefs = {pol: check_href(item.assets[key].href, remote) for pol, key in found.items()}
        if "vv" not in hrefs:
            raise RadarInputError(f"item {item.id}: no vv asset")
        said = None if units == "auto" else units
        values = np.zeros(0, np.float32)
        if sample or said is None:
            with rasterio.open(hrefs["vv"]) as src:
                values = _sample(src, 1)
            nodata = _asset_nodata(item.assets[found["vv"]])
            if nodata is not None:
                values = values[values != np.float32(nodata)]
        resolved = resolve_units(values, units, "linear", item.id) if values.size else (
            said or "linear")
        date = item.datetime.strftime("%Y-%m-%d") if item.datetime else None
        out.append(RadarFile(item.id, (hrefs["vv"], 1),
                             (hrefs["vh"], 1) if "vh" in hrefs else None, None,
                             resolved, date))
    return out


def is_rtc(item: Any) -> bool:
    """Whether an item is terrain-corrected backscatter (not raw GRD amplitude)."""
    kind = str(item.properties.get("sar:product_type", "")).upper()
    collection = str(getattr(item, "collection_id", "") or "").lower()
    if collection.endswith("-grd"):
        return False
    return kind != "GRD" or "rtc" in collection or item.id.lower().endswith("_rtc")


def _asset_nodata(asset: Any) -> float | None:
    bands = asset.extra_fields.get("raster:bands") or [{}]
    value = bands[0].get("nodata") if isinstance(bands[0], dict) else None
    return float(value) if isinstance(value, int | float) else None


def radar_inputs(paths: list[Path], units: Units = "auto", remote: bool = False
                 ) -> list[RadarFile]:
    """Acquisitions from GeoTIFFs and STAC JSON files (items, collections, catalogues)."""
    from serving.imagery.sources import items_from_file

    out: list[RadarFile] = []
    for path in paths:
        if path.suffix.lower() == ".json":
            out += files_from_items(items_from_file(path), units, remote)
        else:
            out.append(describe(path, units))
    return out
