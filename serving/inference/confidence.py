"""Per-pixel confidence of a class map: one definition, written beside the map.

The confidence of a pixel is the **blended probability of the class it was given**
(the top class of the window-blended softmax, :mod:`serving.inference.blending`), in
[0, 1]. It is stored as a one-band uint8 COG on the class map's grid, in percent
(0-100), with :data:`CONFIDENCE_NODATA` where the class map is nodata. The file sits
beside the class map and is named by :func:`confidence_path`
(``maps/x.classes.tif`` -> ``maps/x.confidence.tif``).

The baseline's plot checks read it back (:mod:`serving.plots.check`): the mean
confidence over a plot's forest and loss pixels, and ``needs_review`` below a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

#: Stored value of a pixel without a class (nodata in the class map).
CONFIDENCE_NODATA = 255
#: Stored values per unit probability (percent).
CONFIDENCE_SCALE = 100
#: Band description of the confidence COG.
CONFIDENCE_BAND = "confidence_percent"


def encode_confidence(probs: NDArray[np.floating], valid: NDArray[np.bool_]
                      ) -> NDArray[np.uint8]:
    """The stored confidence of blended probabilities (classes, H, W).

    Args:
        probs: Renormalised blended probabilities; the top class is the pixel's class.
        valid: (H, W) pixels that got a class.

    Returns:
        (H, W) uint8: the top probability in percent, :data:`CONFIDENCE_NODATA` where
        not ``valid``.
    """
    top = probs[0].copy()
    for code in range(1, probs.shape[0]):  # plane by plane: strided max is slow
        np.maximum(top, probs[code], out=top)
    out = np.rint(np.clip(top, 0, 1) * CONFIDENCE_SCALE).astype(np.uint8)
    out[~valid] = CONFIDENCE_NODATA
    return out


def decode_confidence(stored: NDArray[np.integer]) -> NDArray[np.float64]:
    """Stored confidence as probabilities in [0, 1]; NaN where it is nodata."""
    values = stored.astype(np.float64) / CONFIDENCE_SCALE
    values[stored == CONFIDENCE_NODATA] = np.nan
    return values


def confidence_path(class_map: str | Path) -> Path:
    """Where the confidence COG of a class map lives (beside it)."""
    path = Path(class_map)
    name = path.name
    for suffix in (".classes.tif", "_classes.tif", ".tif", ".tiff"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            joiner = "_" if suffix == "_classes.tif" else "."
            return path.with_name(f"{stem}{joiner}confidence.tif")
    return path.with_name(f"{name}.confidence.tif")
