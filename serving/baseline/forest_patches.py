"""The forest definition the regulation uses: forest counts only in patches of 0.5 ha.

FAO (and so the EU deforestation regulation) calls land forest when it spans more than
0.5 ha with trees over 5 m and canopy over 10 %. A class map has no canopy cover, but
it has the area: forest pixels at the reference date count only where they belong to a
patch (8-connected) of at least ``min_forest_ha``, so isolated forest pixels (speckle,
a lone tree crown) cannot be "lost".

A patch is judged inside a window. One that reaches the window's edge may go on beyond
it, so it is kept: windows are read with a margin of :func:`margin_px` pixels around
what is checked, and a patch that touches both what is checked and the window's edge
then crosses the margin, at least that many pixels, so it is at least the minimum
size. Patches wholly inside the window are measured exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: FAO's minimum forest area, in hectares.
DEFAULT_MIN_FOREST_HA = 0.5
EIGHT_CONNECTED = np.ones((3, 3), bool)


def margin_px(min_forest_ha: float, pixel_m2: float) -> int:
    """Pixels around a window that make the patch rule exact inside it."""
    if min_forest_ha <= 0:
        return 0
    return math.ceil(min_forest_ha * 10_000 / pixel_m2) + 1


def forest_in_patches(forest: NDArray[np.bool_], areas_m2: NDArray[np.floating],
                      min_forest_ha: float) -> NDArray[np.bool_]:
    """Forest pixels that belong to a patch of at least ``min_forest_ha``.

    Args:
        forest: (H, W) forest at the reference date.
        areas_m2: (H, W) ground area of each pixel.
        min_forest_ha: Smallest patch that is forest (0: every forest pixel).

    Returns:
        (H, W) forest in patches big enough, or reaching the window's edge.
    """
    if min_forest_ha <= 0 or not forest.any():
        return forest.copy()
    labels, count = ndimage.label(forest, structure=EIGHT_CONNECTED)
    if count == 0:
        return forest.copy()
    sizes = np.bincount(labels.ravel(), weights=areas_m2.ravel(), minlength=count + 1)
    keep = sizes >= min_forest_ha * 10_000
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep[edge] = True
    keep[0] = False
    return keep[labels]
