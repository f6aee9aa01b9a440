"""Per-pixel radar statistics over a period, and how they are stored beside optical bands.

Over a period's Sentinel-1 acquisitions each pixel gets (:data:`RADAR_BANDS`):

- ``VV_mean_db``, ``VH_mean_db``: the temporal mean of linear power, in dB (averaging
  in linear power is what reduces speckle without bias; a mean of dB values is biased
  low by about 2.5 dB for single-look speckle);
- ``VV_std_db``, ``VH_std_db``: the standard deviation of the dB values (texture and
  seasonality: palm fronds and cocoa under shade trees vary differently from closed
  forest);
- ``VV_p10_db`` … ``VH_p90_db``: the 10th and 90th percentiles of the dB values
  (robust to one odd acquisition, e.g. rain on the canopy);
- ``VHVV_ratio_db``: ``VH_mean_db - VV_mean_db`` (volume scattering of canopies);

and :data:`RADAR_COUNT_BAND`, the number of acquisitions that saw the pixel. Temporal
statistics are the speckle filter: with N acquisitions the mean's speckle shrinks as
1/sqrt(N x looks).

They are stored as uint16 like the optical bands, ``DN = (dB + 50) x 100`` (0.01 dB
steps over -50 ... +605 dB; 0 = not seen by radar), so that one COG holds optical and
radar bands and a model's per-band normalisation applies to both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from serving.radar.units import to_db

#: Radar statistics, in file and model order.
RADAR_BANDS: tuple[str, ...] = (
    "VV_mean_db", "VV_std_db", "VV_p10_db", "VV_p90_db",
    "VH_mean_db", "VH_std_db", "VH_p10_db", "VH_p90_db", "VHVV_ratio_db",
)
#: Description of the band holding the number of radar acquisitions per pixel.
RADAR_COUNT_BAND = "radar_count"
#: dB = DN / DB_SCALE - DB_OFFSET.
DB_OFFSET = 50.0
DB_SCALE = 100.0
#: What the tag ``RADAR_ENCODING`` of a stacked composite says.
ENCODING = f"dB = DN / {DB_SCALE:g} - {DB_OFFSET:g}; DN 0 = not seen by radar"


def encode_db(db: NDArray[np.floating[Any]]) -> NDArray[np.uint16]:
    """uint16 DN of dB values (NaN becomes 0, no data)."""
    scaled = np.rint((np.asarray(db, np.float32) + DB_OFFSET) * DB_SCALE)
    return np.where(np.isfinite(scaled), np.clip(scaled, 1, 65535), 0).astype(np.uint16)


def decode_db(dn: NDArray[np.integer[Any]]) -> NDArray[np.float32]:
    """Decibels of uint16 DN (0 becomes NaN)."""
    values = dn.astype(np.float32) / np.float32(DB_SCALE) - np.float32(DB_OFFSET)
    return np.where(dn > 0, values, np.nan).astype(np.float32)


def _percentiles(db: NDArray[np.float32], count: NDArray[np.int64], qs: tuple[float, ...]
                 ) -> list[NDArray[np.float32]]:
    """Percentiles (linear interpolation, as numpy's) of each pixel's finite values."""
    ordered = np.sort(db, axis=0)  # NaN last
    last = np.maximum(count - 1, 0)
    out = []
    for q in qs:
        position = last * (q / 100.0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, last)
        frac = (position - low).astype(np.float32)
        lo = np.take_along_axis(ordered, low[None], axis=0)[0]
        hi = np.take_along_axis(ordered, high[None], axis=0)[0]
        out.append(np.where(count > 0, lo + (hi - lo) * frac, np.nan).astype(np.float32))
    return out


def radar_statistics(vv: NDArray[np.float32], vh: NDArray[np.float32]
                     ) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.int64]]:
    """The statistics of one block, in dB, and the count of acquisitions per pixel.

    Args:
        vv: (dates, H, W) linear power, NaN where an acquisition did not see the pixel
            (outside its swath, border noise, layover or shadow).
        vh: The same for VH (all NaN for a VV-only product).

    Returns:
        ({band name: (H, W) dB, NaN where unseen}, (H, W) count of acquisitions that
        saw the pixel in VV or VH).
    """
    stats: dict[str, NDArray[np.float32]] = {}
    seen = np.zeros(vv.shape[1:], bool)
    count = np.zeros(vv.shape[1:], np.int64)
    for name, power in (("VV", vv), ("VH", vh)):
        finite = np.isfinite(power) & (power > 0)
        n = finite.sum(axis=0)
        count = np.maximum(count, n)
        seen |= n > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.where(finite, power, 0).sum(axis=0) / n, np.nan)
        db = np.where(finite, to_db(np.where(finite, power, 1)), np.nan).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_db = np.where(n > 0, np.where(finite, db, 0).sum(axis=0) / n, np.nan)
            var = np.where(n > 0, np.where(finite, (db - mean_db) ** 2, 0).sum(axis=0) / n,
                           np.nan)
        p10, p90 = _percentiles(db, n, (10.0, 90.0))
        stats[f"{name}_mean_db"] = to_db(mean)
        stats[f"{name}_std_db"] = np.sqrt(var).astype(np.float32)
        stats[f"{name}_p10_db"] = p10
        stats[f"{name}_p90_db"] = p90
    stats["VHVV_ratio_db"] = (stats["VH_mean_db"] - stats["VV_mean_db"]).astype(np.float32)
    return stats, np.where(seen, count, 0)


def radar_block(vv: NDArray[np.float32], vh: NDArray[np.float32]) -> NDArray[np.uint16]:
    """One block of stored radar bands: (len(RADAR_BANDS) + 1, H, W) uint16, count last."""
    stats, count = radar_statistics(vv, vh)
    out = np.empty((len(RADAR_BANDS) + 1, *vv.shape[1:]), np.uint16)
    for i, name in enumerate(RADAR_BANDS):
        out[i] = encode_db(stats[name])
    out[-1] = np.minimum(count, 65535)
    return out
