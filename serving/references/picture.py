"""A reference layer drawn for the map page: what it says over a lon/lat box, as a PNG.

Forest at the cutoff in green, loss or alerts after it in red, a period across the
cutoff in orange, the rest transparent; at most ``max_px`` pixels a side, on a
longitude/latitude grid (the page lays it over the map as an image). Decoded on the
layer's own grid and resampled by nearest neighbour
(:func:`serving.references.layers.masks_on_grid`).
"""

from __future__ import annotations

import io

import numpy as np
from rasterio.transform import from_bounds

from serving.references.layers import ReferenceLayer, masks_on_grid
from serving.references.spec import SpecError

#: Largest side of a drawn layer, in pixels.
MAX_PX = 1024
#: Largest box drawn, in degrees a side (a region, not a country).
MAX_DEGREES = 1.0
#: RGBA of forest, loss after the cutoff, and a period across it.
COLOURS = {"forest": (46, 125, 50, 110), "straddles": (245, 124, 0, 200),
           "loss": (211, 47, 47, 220)}


def layer_png(layer: ReferenceLayer, bbox: tuple[float, float, float, float],
              max_px: int = MAX_PX) -> bytes:
    """The layer over ``bbox`` (west, south, east, north in degrees) as an RGBA PNG.

    Raises:
        SpecError: For a box that is not one, or larger than :data:`MAX_DEGREES`.
    """
    from PIL import Image

    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise SpecError(f"bbox {list(bbox)} is not west, south, east, north in degrees")
    if max(east - west, north - south) > MAX_DEGREES:
        raise SpecError(f"bbox {list(bbox)} is larger than {MAX_DEGREES}° a side")
    scale = max_px / max(east - west, north - south)
    width = max(1, round((east - west) * scale))
    height = max(1, round((north - south) * scale))
    transform = from_bounds(west, south, east, north, width, height)
    masks = masks_on_grid(layer, "EPSG:4326", transform, (height, width))
    rgba = np.zeros((height, width, 4), np.uint8)
    for key in ("forest", "straddles", "loss"):  # loss drawn last, on top
        rgba[masks[key]] = COLOURS[key]
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()
