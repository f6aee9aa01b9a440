"""Which input pixels are observed: one definition for training, serving and pictures.

A pixel is observed when every band holds a finite number and not all bands equal the
imagery's nodata value. The same rule masks the loss in training
(:mod:`training.data.datamodule`), fills and marks nodata when tiles and scenes are
classified (:mod:`serving.inference.tiles`), and makes unobserved pixels transparent on
the map page (:mod:`serving.http.browser_maps`). It works on NumPy arrays and on torch
tensors alike (nothing here imports torch).
"""

from __future__ import annotations

from typing import Any, TypeVar

Array = TypeVar("Array", bound=Any)

#: Axis of the bands: images are (..., bands, height, width).
BAND_AXIS = -3


def is_floating(image: Any) -> bool:
    """Whether an array's or a tensor's dtype is a floating-point type."""
    return "float" in str(image.dtype)


def observed(image: Array, nodata: float | None) -> Array:
    """Boolean (..., H, W): pixels finite in every band and not nodata in every band.

    Args:
        image: (..., bands, H, W), a NumPy array or a torch tensor.
        nodata: Raw value marking no observation (None: only NaN/Inf do).

    Returns:
        The mask, of the input's kind (NumPy array or tensor), on the input's device.
    """
    bands = image.shape[BAND_AXIS]
    # Band by band: strided reductions over the band axis are several times slower.
    first = image[..., 0, :, :]
    valid = (first == first) | (first != first)  # all True, of the input's kind and device
    if is_floating(image):
        for band in range(bands):
            plane = image[..., band, :, :]
            valid &= (plane == plane) & (abs(plane) != float("inf"))
    if nodata is not None:
        unobserved = first == nodata
        for band in range(1, bands):
            unobserved &= image[..., band, :, :] == nodata
        valid &= ~unobserved
    return valid
