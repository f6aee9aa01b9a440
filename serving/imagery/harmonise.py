"""One meaning of a digital number before and after Sentinel-2 processing baseline 04.00.

Since processing baseline 04.00 (acquisitions from 2022-01-25) L2A digital numbers carry
a BOA offset: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, with an
offset of -1000. Before, reflectance = DN / 10000. Unless the offset is removed, a 2020
reference and a 2024 monitoring date differ by 0.1 reflectance in every band, which a
model reads as a change of land cover.

:func:`boa_offset` reads the offset of one band of one STAC item from its metadata,
in this order:

1. ``earthsearch:boa_offset_applied: true``: the provider already removed it (0);
2. the asset's ``raster:bands`` ``offset`` and ``scale`` (Earth Search, and the items
   :mod:`serving.imagery.safe` makes from SAFE folders): ``offset / scale`` DN;
3. ``s2:processing_baseline`` at 04.00 or later without either: ESA's -1000;
4. otherwise 0.

:func:`harmonised` applies it: harmonised DN = DN + offset, so that harmonised DN /
10000 is reflectance at every baseline (the convention the model was trained on).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from serving.bands import REFLECTANCE_SCALE

#: The processing baseline from which L2A digital numbers carry the BOA offset.
OFFSET_BASELINE = (4, 0)
#: ESA's BOA_ADD_OFFSET of processing baselines 04.00 and later.
ESA_BOA_OFFSET = -1000.0
#: Digital numbers per unit of reflectance (BOA_QUANTIFICATION_VALUE).
QUANTIFICATION = REFLECTANCE_SCALE


class HarmonisationError(ValueError):
    """Metadata that does not say how to read an item's digital numbers."""


def processing_baseline(properties: dict[str, Any]) -> tuple[int, int] | None:
    """The item's processing baseline as (major, minor), or None if not given."""
    value = properties.get("s2:processing_baseline")
    if value in (None, ""):
        return None
    try:
        major, minor = str(value).split(".")
        return int(major), int(minor)
    except ValueError as err:
        raise HarmonisationError(
            f"unreadable s2:processing_baseline {value!r} (expected NN.NN)") from err


def boa_offset(properties: dict[str, Any], asset: dict[str, Any]) -> float:
    """The offset in DN to add to one band of one item so that DN / 10000 = reflectance.

    Args:
        properties: The STAC item's properties.
        asset: The band asset as a dict (``asset.to_dict()``).

    Returns:
        The offset in digital numbers (-1000 for baseline 04.00+, 0 before).
    """
    if properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    raster = asset.get("raster:bands") or []
    if raster and "offset" in raster[0]:
        scale = float(raster[0].get("scale", 1 / QUANTIFICATION))
        return float(raster[0]["offset"]) / scale
    baseline = processing_baseline(properties)
    if baseline is not None and baseline >= OFFSET_BASELINE:
        return ESA_BOA_OFFSET
    return 0.0


def harmonised(dn: NDArray[np.number], offset: float, nodata: float = 0
               ) -> NDArray[np.float32]:
    """Digital numbers with the BOA offset removed, as float32 (NaN where ``nodata``).

    Values that the offset takes to 0 or below (very dark water at baseline 04.00) are
    kept at 1 DN, so that 0 keeps meaning "no data" downstream.
    """
    values = np.asarray(dn, np.float32)
    out = np.maximum(values + np.float32(offset), np.float32(1))
    out[values == nodata] = np.nan
    return out
