"""Sentinel-2 L2A surface reflectance of the synthetic land covers.

Endmember spectra are representative surface reflectances for the ten 10/20 m bands,
read off the shapes of published spectra (see ``datasets/synthetic/README.md`` for the
sources and assumptions). Classes are built as *mixtures* of endmembers (cocoa under a
patchy shade canopy, palm rows over inter-row grass and soil, pasture/shrub/bare-soil
mosaics), which is what makes them overlap per pixel and separable only with context.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from serving.bands import DEFAULT_BANDS, REFLECTANCE_SCALE

#: Band names of the default imagery, in file order (the serving contract's default).
S2_BANDS: tuple[str, ...] = DEFAULT_BANDS
#: Central wavelengths in nm, for the record and for the haze model.
S2_WAVELENGTHS_NM: tuple[int, ...] = (490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190)

#: Surface reflectance (0-1) of each endmember in S2_BANDS order.
ENDMEMBERS: dict[str, tuple[float, ...]] = {
    # Closed tropical evergreen canopy: dark visible, strong red edge, moderate SWIR.
    "forest": (0.020, 0.040, 0.022, 0.065, 0.200, 0.255, 0.280, 0.300, 0.140, 0.060),
    # Sunlit cocoa layer (cocoa, banana, understorey): brighter green/red, more SWIR.
    "cocoa_leaf": (0.030, 0.060, 0.040, 0.095, 0.230, 0.270, 0.290, 0.305, 0.180, 0.090),
    # Oil palm crowns: high NIR plateau, slightly higher SWIR than forest.
    "palm_crown": (0.025, 0.050, 0.028, 0.080, 0.250, 0.320, 0.345, 0.360, 0.165, 0.070),
    # Palm inter-row: cover crop, frond piles and soil.
    "palm_interrow": (0.045, 0.075, 0.070, 0.120, 0.210, 0.240, 0.260, 0.270, 0.250, 0.150),
    # Grazed pasture (Brachiaria).
    "pasture": (0.040, 0.075, 0.055, 0.115, 0.240, 0.280, 0.300, 0.310, 0.230, 0.125),
    # Red ultisol, bare or burnt.
    "bare_soil": (0.070, 0.100, 0.140, 0.170, 0.190, 0.205, 0.220, 0.235, 0.300, 0.230),
    # Secondary shrub regrowth (purma): forest-like but brighter SWIR.
    "shrub": (0.025, 0.050, 0.035, 0.085, 0.230, 0.280, 0.305, 0.320, 0.180, 0.085),
    # Sediment-laden Amazonian river (Huallaga): brown, NIR and SWIR absorbed.
    "water": (0.060, 0.080, 0.075, 0.070, 0.045, 0.040, 0.035, 0.030, 0.012, 0.008),
    # Roofs (corrugated metal, tile) and streets.
    "built": (0.090, 0.100, 0.110, 0.125, 0.140, 0.150, 0.160, 0.165, 0.210, 0.190),
    # Optically thick cumulus.
    "cloud": (0.450, 0.440, 0.440, 0.450, 0.460, 0.470, 0.470, 0.470, 0.350, 0.250),
}

#: Relative strength of haze (aerosol path radiance left after correction) per band.
HAZE_SHAPE: tuple[float, ...] = tuple(
    (490.0 / wl) ** 2 if wl < 1000 else 0.05 for wl in S2_WAVELENGTHS_NM
)



def endmember(name: str) -> NDArray[np.float32]:
    """The reflectance vector of an endmember as a (bands, 1, 1) array."""
    return np.asarray(ENDMEMBERS[name], np.float32)[:, None, None]


def mix(weight: NDArray[np.float32], a: str, b: str) -> NDArray[np.float32]:
    """Linear mixture ``weight * a + (1 - weight) * b`` of two endmembers.

    Args:
        weight: Fraction of endmember ``a`` per pixel, shape (H, W).
        a: Name of the first endmember.
        b: Name of the second endmember.

    Returns:
        Reflectance of shape (bands, H, W).
    """
    w = weight[None]
    return w * endmember(a) + (1 - w) * endmember(b)


def to_digital_numbers(reflectance: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Scale reflectance to L2A uint16 DN, keeping 0 free for nodata."""
    dn = np.rint(reflectance * REFLECTANCE_SCALE)
    return np.clip(dn, 1, 65535).astype(np.uint16)
