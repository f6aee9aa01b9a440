"""Which input pixels are observed: one definition for training, serving and pictures.

A pixel is observed when every band holds a finite number and not all bands equal the
imagery's nodata value. With optical and radar bands stacked (:func:`sensor_groups`),
each sensor's bands are filled where that sensor saw nothing, and a pixel is unobserved
only where neither did. The same rule masks the loss in training
(:mod:`training.data.datamodule`), fills and marks nodata when tiles and scenes are
classified (:mod:`serving.inference.tiles`), and makes unobserved pixels transparent on
the map page (:mod:`serving.http.browser_maps`). It works on NumPy arrays and on torch
tensors alike (nothing here imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from serving.radar.statistics import RADAR_BANDS

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


def sensor_groups(bands: Sequence[str]) -> list[list[int]]:
    """Indexes of a model's bands by sensor: ``[optical]``, or ``[optical, radar]``.

    Radar bands are the radar statistics (:data:`serving.radar.statistics.RADAR_BANDS`);
    every other band is optical. A group is left out when the model reads none of it.
    """
    radar = [i for i, b in enumerate(bands) if b in RADAR_BANDS]
    optical = [i for i, b in enumerate(bands) if b not in RADAR_BANDS]
    return [g for g in (optical, radar) if g]


def observed_by_sensor(image: Array, nodata: float | None, groups: list[list[int]]
                       ) -> list[Array]:
    """Per sensor group, the (..., H, W) pixels that sensor observed (:func:`observed`)."""
    if len(groups) == 1:
        return [observed(image, nodata)]
    return [observed(image[..., group, :, :], nodata) for group in groups]
