"""Sentinel-1 over the synthetic landscape: gamma0 VV and VH every 12 days, through clouds.

Per class a backscatter signature in dB (C band, gamma0, values in the range published
for Amazonian land covers): closed forest bright in VH from volume scattering and
steady through the year; oil palm almost as bright, with a marked seasonal swing (frond
moisture) and little texture (regular rows); cocoa agroforestry between forest and
palm, with a strong texture (shade trees over cocoa, parcel by parcel); degraded land
and bare soil dark in VH; water (in ``other``) darkest. Each acquisition multiplies the
pixel's power by gamma-distributed speckle of :data:`LOOKS` looks. Clouds do not touch
it. Acquisitions are rendered at 10 m and written at 20 m (the mean of linear power of
2 x 2 pixels, as multilooking does), in linear power, one GeoTIFF per date with bands
``VV`` and ``VH`` (``UNITS=linear``). Every fifth acquisition carries GRD border noise
(zero power) along its western edge, which the radar reader must drop.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.transform import Affine

from training.synthetic.landscape import COCOA, DEGRADED, FOREST, OTHER, PALM

#: Equivalent number of looks of the speckle (Sentinel-1 IW GRD high resolution: ~4.4).
LOOKS = 4.4
#: Days between acquisitions of one orbit.
REVISIT_DAYS = 12
#: Per class: (VV dB, VH dB, seasonal amplitude dB, day of the seasonal peak,
#: spatial texture dB).
SIGNATURES: dict[int, tuple[float, float, float, int, float]] = {
    FOREST: (-6.8, -12.2, 0.25, 60, 0.35),
    COCOA: (-7.6, -13.6, 0.5, 90, 1.4),
    PALM: (-7.0, -13.1, 1.6, 300, 0.4),
    DEGRADED: (-10.8, -18.4, 1.2, 120, 1.0),
    OTHER: (-14.5, -22.5, 0.8, 150, 2.0),
}
#: Columns of zero power at the western edge of every fifth acquisition.
BORDER_NOISE_PX = 6


def radar_dates(year: int) -> list[dt.date]:
    """Acquisition dates of one orbit over ``year``, every :data:`REVISIT_DAYS` days."""
    day = dt.date(year, 1, 3)
    dates = []
    while day.year == year:
        dates.append(day)
        day += dt.timedelta(days=REVISIT_DAYS)
    return dates


def _texture(cover: NDArray[np.uint8], seed: int) -> NDArray[np.float32]:
    """A fixed per-pixel offset in dB: smooth patches scaled by each class's texture."""
    rng = np.random.default_rng(seed)
    size = cover.shape[0]
    coarse = rng.normal(0, 1, (size // 8 + 2, size // 8 + 2)).astype(np.float32)
    smooth = np.kron(coarse, np.ones((8, 8), np.float32))[:size, :cover.shape[1]]
    fine = rng.normal(0, 0.5, cover.shape).astype(np.float32)
    scale = np.zeros(cover.shape, np.float32)
    for code, (*_, texture) in SIGNATURES.items():
        scale[cover == code] = texture
    return (smooth + fine) * scale


def acquisition(cover: NDArray[np.uint8], texture: NDArray[np.float32], day: dt.date,
                rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(VV, VH) linear power at 10 m of one date over a land-cover map."""
    vv_db = np.full(cover.shape, np.nan, np.float32)
    vh_db = np.full(cover.shape, np.nan, np.float32)
    doy = day.timetuple().tm_yday
    for code, (vv, vh, amplitude, peak, _) in SIGNATURES.items():
        where = cover == code
        season = amplitude * np.cos(2 * np.pi * (doy - peak) / 365.25)
        vv_db[where] = vv + season
        vh_db[where] = vh + season * 1.3
    vv_db += texture
    vh_db += texture
    shape = cover.shape
    vv_lin = 10 ** (vv_db / 10) * rng.gamma(LOOKS, 1 / LOOKS, shape)
    vh_lin = 10 ** (vh_db / 10) * rng.gamma(LOOKS, 1 / LOOKS, shape)
    return vv_lin.astype(np.float32), vh_lin.astype(np.float32)


def to_20m(power: NDArray[np.float32]) -> NDArray[np.float32]:
    """The mean of linear power over 2 x 2 pixels (NaN stays NaN)."""
    h, w = power.shape[0] // 2 * 2, power.shape[1] // 2 * 2
    return power[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32)


def write_radar_series(out: Path, covers: dict[int, NDArray[np.uint8]], years: list[int],
                       crs: str, transform: Affine, seed: int) -> list[Path]:
    """One GeoTIFF per acquisition of each year, over that year's land cover.

    Args:
        out: Folder for the files (``S1X_IW_GRDH_<date>T101500_gamma0_linear.tif``).
        covers: Land cover per period index (no clouds).
        years: The year of each period index.
        crs: The landscape's CRS.
        transform: The landscape's 10 m transform.
        seed: Seed of the speckle and textures.

    Returns:
        The files written, in date order.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 101)
    coarse = transform * Affine.scale(2)
    written = []
    for period, year in enumerate(years):
        cover = covers[period]
        texture = _texture(cover, seed + 7)  # parcels keep their texture across years
        for k, day in enumerate(radar_dates(year)):
            vv, vh = (to_20m(p) for p in acquisition(cover, texture, day, rng))
            if k % 5 == 4:
                vv[:, :BORDER_NOISE_PX] = 0.0
                vh[:, :BORDER_NOISE_PX] = 0.0
            path = out / f"S1X_IW_GRDH_{day:%Y%m%d}T101500_gamma0_linear.tif"
            with rasterio.open(path, "w", driver="GTiff", width=vv.shape[1],
                               height=vv.shape[0], count=2, dtype="float32", crs=crs,
                               transform=coarse, compress="DEFLATE", tiled=True,
                               blockxsize=256, blockysize=256) as dst:
                dst.write(np.stack([vv, vh]))
                dst.descriptions = ("VV", "VH")
                dst.update_tags(UNITS="linear", DATE=f"{day:%Y%m%d}",
                                PRODUCT="synthetic Sentinel-1 IW gamma0 (cacaomap)")
            written.append(path)
    return written
