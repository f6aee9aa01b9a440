"""An optional spatial speckle filter, applied to each acquisition before the statistics.

The temporal statistics are cacaomap's speckle filter (:mod:`serving.radar.statistics`):
with N acquisitions of L looks the mean's speckle shrinks as 1/sqrt(N x L) and no edge
is blurred. A spatial filter adds smoothing where the period has few acquisitions, at
the cost of mixing neighbouring parcels. It is off by default; ``make bench``'s section
``radar_statistics`` measures what it does (docs/radar.md).

The filter is Lee's (1980) local linear minimum-mean-square-error filter, in linear
power, in the source's own pixels (where the speckle is: before any resampling):

    out = m + k (x - m),   k = var_x / (var_x + m^2 / L),
    var_x = max(0, (var - m^2 / L) / (1 + 1 / L)),

with ``m`` and ``var`` the mean and variance over the window of the pixels seen (NaN
never enters them), and ``L`` the equivalent number of looks (Sentinel-1 IW GRDH: 4.4,
Planetary Computer's ``sar:looks_equivalent_number``). Where the window is uniform
(``var`` close to ``m^2 / L``) the output is the window's mean; at an edge or a point
target (``var`` much larger) the pixel is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter

#: Equivalent number of looks of Sentinel-1 IW GRDH products.
IW_LOOKS = 4.4


@dataclass(frozen=True)
class Speckle:
    """A spatial speckle filter: which, its window side (odd, pixels) and the looks."""

    filter: Literal["none", "lee"] = "none"
    window: int = 5
    looks: float = IW_LOOKS

    def __post_init__(self) -> None:
        if self.filter not in ("none", "lee"):
            raise ValueError(f"unknown speckle filter {self.filter!r}; use none or lee")
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"the speckle window is an odd side of 3 px or more; got "
                             f"{self.window}")
        if self.looks <= 0:
            raise ValueError(f"the number of looks is positive; got {self.looks}")

    @property
    def halo(self) -> int:
        """Source pixels a filtered pixel depends on, on each side (0 without a filter)."""
        return 0 if self.filter == "none" else self.window // 2

    def describe(self) -> str:
        """How the filter is named in tags and lineage."""
        if self.filter == "none":
            return "none (temporal statistics only)"
        return f"{self.filter} {self.window}x{self.window}, {self.looks:g} looks"

    def apply(self, power: NDArray[np.float32]) -> NDArray[np.float32]:
        """The filtered linear power of one (H, W) band; NaN stays NaN."""
        if self.filter == "none":
            return power
        return lee(power, self.window, self.looks)


NO_SPECKLE_FILTER = Speckle()


def lee(power: NDArray[np.floating[Any]], window: int, looks: float
        ) -> NDArray[np.float32]:
    """Lee's filter of linear power (H, W); NaN (unseen) pixels are left out and kept NaN.

    Args:
        power: Linear power, NaN where not seen.
        window: Odd window side in pixels.
        looks: Equivalent number of looks of the product.
    """
    seen = np.isfinite(power)
    x = np.where(seen, power, 0.0).astype(np.float64)
    share = uniform_filter(seen.astype(np.float64), window, mode="constant")
    cu2 = 1.0 / looks
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN only where nothing seen
        mean = uniform_filter(x, window, mode="constant") / share
        second = uniform_filter(x * x, window, mode="constant") / share
        var = np.maximum(second - mean * mean, 0.0)
        var_x = np.maximum((var - mean * mean * cu2) / (1.0 + cu2), 0.0)
        noise = mean * mean * cu2
        k = np.where(var_x + noise > 0, var_x / (var_x + noise), 1.0)
        out = mean + k * (x - mean)
    return np.where(seen, out, np.nan).astype(np.float32)


def equivalent_looks(power: NDArray[np.floating[Any]]) -> float:
    """ENL of a homogeneous area of linear power: mean^2 / variance of the pixels seen."""
    values = np.asarray(power, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean() ** 2 / values.var()) if values.size > 1 else float("nan")
