"""Which observations are clear: Sentinel-2's scene classification, or a cloud model.

Two sources of a clear-sky mask, one answer (a boolean array, True = clear):

- :func:`scl_clear`: the L2A scene classification layer (SCL). Classes 0 (no data),
  1 (saturated or defective), 3 (cloud shadow), 8, 9 (cloud, medium and high
  probability) and 10 (thin cirrus) are never clear; 11 (snow or ice) is not clear by
  default (configurable: snow is not what a land-cover model is trained on).
- :func:`csmask_clear`: the ukis-csmask L2A model (an ONNX U-Net that ships inside its
  wheel; it runs on ONNX Runtime, no torch), for imagery without SCL, with its buffer of
  invalid pixels around clouds and shadows.

The name of the source (:data:`MaskSource`) goes into the lineage of every output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

#: Where a mask came from: the product's SCL, the ukis-csmask model, an uploaded or
#: side-car mask file, or nothing (asked for explicitly).
MaskSource = Literal["scl", "csmask", "file", "none"]

#: SCL classes that are never a clear view of the ground (ESA L2A product definition).
SCL_NEVER_CLEAR: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
#: SCL classes of clouds and their shadows (grown by a buffer).
SCL_CLOUD_OR_SHADOW: tuple[int, ...] = (3, 8, 9, 10)
#: SCL class of snow and ice.
SCL_SNOW = 11
#: Names of the SCL classes, for messages and pictures.
SCL_NAMES: dict[int, str] = {
    0: "no data", 1: "saturated or defective", 2: "dark area pixels",
    3: "cloud shadows", 4: "vegetation", 5: "not vegetated", 6: "water",
    7: "unclassified", 8: "cloud medium probability", 9: "cloud high probability",
    10: "thin cirrus", 11: "snow",
}

#: Band names of the ukis-csmask six-band model, and the Sentinel-2 bands that give them.
CSMASK_BANDS: dict[str, str] = {
    "B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16",
    "B12": "swir22",
}


def scl_invalid_classes(snow_is_clear: bool = False) -> tuple[int, ...]:
    """The SCL classes that make an observation unusable."""
    return SCL_NEVER_CLEAR if snow_is_clear else (*SCL_NEVER_CLEAR, SCL_SNOW)


def scl_clear(scl: NDArray[np.integer], snow_is_clear: bool = False) -> NDArray[np.bool_]:
    """True where the scene classification says the ground was seen clearly.

    Args:
        scl: SCL codes (any shape, integer).
        snow_is_clear: Count snow and ice (class 11) as clear.

    Returns:
        A boolean array of the same shape.
    """
    return ~np.isin(scl, scl_invalid_classes(snow_is_clear))


def buffered(clear: NDArray[np.bool_], unclear_cloud: NDArray[np.bool_], pixels: int
             ) -> NDArray[np.bool_]:
    """``clear`` without the pixels within ``pixels`` of a cloud or shadow.

    Cloud edges are fainter than cloud cores and masks miss them; a buffer of a few
    pixels (as Fmask, s2cloudless and ukis-csmask use) keeps their brightening out of
    composites. No-data edges are not buffered.
    """
    if pixels <= 0:
        return clear
    from scipy.ndimage import binary_dilation

    return clear & ~binary_dilation(unclear_cloud, iterations=pixels)


def scl_clear_buffered(scl: NDArray[np.integer], pixels: int, snow_is_clear: bool = False
                       ) -> NDArray[np.bool_]:
    """:func:`scl_clear`, with clouds and shadows (3, 8, 9, 10) grown by ``pixels``."""
    return buffered(scl_clear(scl, snow_is_clear), np.isin(scl, SCL_CLOUD_OR_SHADOW),
                    pixels)


def csmask_clear(
    reflectance: NDArray[np.floating],
    bands: Sequence[str],
    invalid_buffer: int = 4,
    threads: int = 1,
    product_level: Literal["l2a", "l1c"] = "l2a",
) -> NDArray[np.bool_]:
    """True where the ukis-csmask L2A model sees neither cloud nor cloud shadow.

    Args:
        reflectance: (bands, H, W) surface reflectance in [0, 1] (not DN); NaN or 0 in
            every band is no data.
        bands: Sentinel-2 band names of ``reflectance`` in order; must hold B02, B03,
            B04, B08 (the four-band model) and ideally B11 and B12 (six-band model).
        invalid_buffer: Pixels buffered around clouds and shadows (the model's default).
        threads: ONNX Runtime intra-op threads.
        product_level: ``l2a`` (surface reflectance) or ``l1c`` (top of atmosphere).

    Returns:
        (H, W) boolean clear mask; no-data pixels are not clear.

    Raises:
        ValueError: The bands the model needs are missing.
    """
    from ukis_csmask.mask import CSmask

    names = [CSMASK_BANDS.get(b) for b in bands]
    needed = {"blue", "green", "red", "nir"}
    if not needed <= set(n for n in names if n):
        raise ValueError(
            f"the cloud mask model needs bands B02, B03, B04 and B08; got {list(bands)}")
    keep = [i for i, n in enumerate(names) if n]
    image = np.moveaxis(np.asarray(reflectance, np.float32)[keep], 0, -1)
    nodata = ~np.isfinite(image).all(axis=-1) | (image == 0).all(axis=-1)
    image = np.where(nodata[..., None], 0, image).astype(np.float32)
    model = CSmask(
        img=image, band_order=[n for n in names if n], product_level=product_level,
        nodata_value=0, invalid_buffer=1,
        intra_op_num_threads=threads, inter_op_num_threads=1,
        providers=["CPUExecutionProvider"],
    )
    # The buffer is applied here: the model's own dilation with a buffer of 0 dilates
    # until nothing changes (scipy's meaning of iterations=0), i.e. masks everything.
    invalid = (np.asarray(model.csm)[..., 0] != 0) | nodata
    if invalid_buffer > 0:
        from scipy.ndimage import binary_dilation

        invalid = binary_dilation(invalid, iterations=invalid_buffer)
    return ~invalid
