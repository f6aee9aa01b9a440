"""Backscatter units: linear power or decibels, said by the user or the file, and checked.

Sentinel-1 backscatter (sigma0 or gamma0, VV and VH) comes as linear power (Planetary
Computer's ``sentinel-1-rtc``, most GeoTIFF exports) or in decibels (many
preprocessed stacks, BigEarthNet, pyroSAR). Every statistic cacaomap computes, and
every resampling, is done in linear power; dB is only what is reported and stored.
A file whose values contradict the units it is said to have is refused: a "linear"
file with mostly negative values is dB, and a "dB" file of small positive numbers is
linear — reading either the wrong way would put every pixel tens of dB off.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

#: Units a radar file may be said to have; ``auto``: the file's tags, else its values.
Units = Literal["linear", "db", "auto"]
#: Share of negative values above which backscatter is in dB (linear power is >= 0).
DB_NEGATIVE_SHARE = 0.2
#: Linear power above this median is not backscatter (gamma0 of land is about 0.001-1).
LINEAR_MEDIAN_MAX = 3.0
#: Tag values and fragments of names that say "decibels".
_DB_WORDS = ("db", "decibel")


class RadarUnitsError(ValueError):
    """Radar values whose units are not what they are said to be; names the file."""


def to_db(linear: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Decibels of linear power (NaN where the power is not positive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(np.where(linear > 0, linear, np.nan))
    return out.astype(np.float32)


def to_linear(db: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Linear power of decibels."""
    return np.power(np.float32(10.0), np.asarray(db, np.float32) / np.float32(10.0))


def units_from_tags(tags: dict[str, str], descriptions: tuple[str | None, ...],
                    name: str) -> Literal["linear", "db"] | None:
    """The units a file's tags, band descriptions or name say (None: they do not say)."""
    for key in ("UNITS", "units", "BACKSCATTER_UNITS", "SCALE_TYPE"):
        said = tags.get(key, "").strip().lower()
        if said:
            if any(w in said for w in _DB_WORDS):
                return "db"
            if "linear" in said or said in ("power", "amplitude^2"):
                return "linear"
    words = " ".join([*(d or "" for d in descriptions), name]).lower().replace("-", "_")
    if "_db" in words or "decibel" in words or words.endswith("db.tif"):
        return "db"
    if "linear" in words:
        return "linear"
    return None


def units_from_values(values: NDArray[np.floating[Any]]) -> Literal["linear", "db"] | None:
    """The units finite backscatter values look like (None: neither)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    if float((finite < 0).mean()) > DB_NEGATIVE_SHARE:
        return "db"
    if float(np.median(finite)) <= LINEAR_MEDIAN_MAX:
        return "linear"
    return None


def resolve_units(values: NDArray[np.floating[Any]], said: Units, file_says: str | None,
                  name: str) -> Literal["linear", "db"]:
    """The units to read ``values`` in: what was said, checked against the values.

    Args:
        values: A sample of the file's finite backscatter values (nodata removed).
        said: What the user said (``auto``: the file's tags, else the values).
        file_says: What the file's tags say (:func:`units_from_tags`).
        name: The file, for messages.

    Raises:
        RadarUnitsError: The values contradict the units, or nothing tells them.
    """
    looks = units_from_values(values)
    finite = values[np.isfinite(values)]
    summary = (f"{float((finite < 0).mean()):.0%} negative, median "
               f"{float(np.median(finite)):.3g}" if finite.size else "no finite values")
    units = file_says if said == "auto" else said
    if units is None:
        if looks is None:
            raise RadarUnitsError(
                f"{name}: cannot tell whether the backscatter is linear power or dB "
                f"({summary}): say --radar-units linear or db")
        return looks
    if looks is not None and looks != units:
        source = "the file's tags say" if said == "auto" else "said to be"
        raise RadarUnitsError(
            f"{name}: {source} {'dB' if units == 'db' else 'linear power'}, but the values "
            f"look like {'dB' if looks == 'db' else 'linear power'} ({summary}): check the "
            f"file or say --radar-units {looks}")
    if looks is None and units == "linear":
        raise RadarUnitsError(
            f"{name}: said to be linear power, but the values are not backscatter "
            f"({summary}; linear gamma0 of land is about 0.001-1)")
    return units  # type: ignore[return-value]
