"""A scene, a mask or a class map checked against the contract before any pixel is read.

Size (the pixel limit: a 13 KB file can declare 40000² pixels), bands (the model's, or
those and a composite's clear count), dtype, storage layout (no compressed strips that
every window would inflate whole), CRS, north-up transform, a place on Earth and a
ground pixel size near the training imagery's. Each refusal is an
:class:`~serving.inference.tiles.InputError` naming the problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.enums import Interleaving
from rasterio.io import DatasetReader

from serving.areas import AreaError, check_georeferencing, ground_pixel_size
from serving.imagery.composite import COUNT_BAND, composite_band_indexes
from serving.inference.tiles import InputError, TileClassifier
from serving.settings import DEFAULT_MAX_PIXELS

#: A scene's ground pixel size may differ from the training imagery's by this factor.
PIXEL_SIZE_TOLERANCE = 1.5

#: Largest decoded compressed strip a scene may be stored in (see ``_check_layout``).
MAX_STRIP_BYTES = 16 * 2**20


def check_class_map(src: DatasetReader, name: str = "class map",
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a class map too large to read or placed nowhere on Earth, before decoding.

    Class maps are read whole (the baseline compares them pixel by pixel), so they are
    held to the same pixel limit as scenes: a 13 KB file can declare 40000² pixels.

    Raises:
        InputError: Naming the problem.
    """
    _check_size(src, f"the {name} class map", max_pixels)
    if src.crs is not None:
        _check_place(src, f"the {name} class map")


def _check_size(src: DatasetReader, what: str, max_pixels: int) -> None:
    if src.width == 0 or src.height == 0:
        raise InputError(f"{what} is empty ({src.width} x {src.height} pixels)")
    if src.width * src.height > max_pixels:
        raise InputError(
            f"{what} declares {src.width} x {src.height} = {src.width * src.height:,} "
            f"pixels, over the limit of {max_pixels:,}"
        )


def _check_layout(src: DatasetReader) -> None:
    """Refuse compressed strips so large that every window would inflate whole strips.

    Windows are read tile by tile; a compressed block is decoded whole for each window
    that touches it. Tiled scenes (COGs) and small strips cost a few blocks a window; a
    scene stored as one DEFLATE strip would be inflated whole for every window (at the
    pixel limit, ~2 GB a read), so the scene path's memory bound would not hold.
    """
    if not src.compression:
        return  # GDAL reads part of an uncompressed strip
    block_h, block_w = src.block_shapes[0]
    bands = src.count if src.interleaving == Interleaving.pixel else 1
    block_bytes = block_h * block_w * bands * np.dtype(src.dtypes[0]).itemsize
    if block_w >= src.width and block_bytes > MAX_STRIP_BYTES:
        raise InputError(
            f"the scene is stored in compressed strips of {block_h} rows "
            f"({block_bytes / 2**20:,.0f} MiB each decoded, over "
            f"{MAX_STRIP_BYTES / 2**20:.0f} MiB): every window would inflate whole strips. "
            "Store it tiled, e.g. gdal_translate -of COG scene.tif scene_cog.tif")
    if block_bytes > MAX_STRIP_BYTES:  # tiled, but in tiles as large as strips
        raise InputError(
            f"the scene is stored in compressed tiles of {block_w} x {block_h} px "
            f"({block_bytes / 2**20:,.0f} MiB each decoded, over "
            f"{MAX_STRIP_BYTES / 2**20:.0f} MiB): every window would inflate whole tiles. "
            "Store it in small tiles, e.g. gdal_translate -of COG scene.tif scene_cog.tif")


def _check_place(src: DatasetReader, what: str) -> None:
    try:
        check_georeferencing(src.crs, src.transform, src.height, src.width)
    except AreaError as err:
        raise InputError(f"{what}: {err}") from err


def check_scene(
    src: DatasetReader, classifier: TileClassifier, max_pixels: int = DEFAULT_MAX_PIXELS,
    require_crs: bool = True,
) -> None:
    """Refuse a scene that breaks the contract, before reading any pixel.

    Raises:
        InputError: Naming the problem (size, bands, dtype, CRS, transform).
    """
    c = classifier.contract
    _check_size(src, "the scene", max_pixels)
    if scene_bands(src, c.bands) is None:
        raise InputError(f"expected {c.num_bands} bands ({', '.join(c.bands)}), or those "
                         f"and a last band '{COUNT_BAND}' (a composite); the scene has "
                         f"{src.count}")
    if src.dtypes[0] != c.input_dtype:
        raise InputError(f"expected dtype {c.input_dtype}; the scene is {src.dtypes[0]}")
    _check_layout(src)
    if require_crs and src.crs is None:
        raise InputError("the scene has no CRS: its classes cannot be given in hectares")
    t = src.transform
    if t.b != 0 or t.d != 0:
        raise InputError("the scene's geotransform is rotated; warp it north-up first")
    if src.crs is not None:
        _check_place(src, "the scene")
    trained = c.pixel_size_m
    if trained and src.crs is not None:
        size = ground_pixel_size(src.crs, t, src.height, src.width)
        if size is not None and not trained / PIXEL_SIZE_TOLERANCE <= size <= (
                trained * PIXEL_SIZE_TOLERANCE):
            raise InputError(
                f"the scene's pixels are {size:,.1f} m on the ground; the model was "
                f"trained on {trained:,.1f} m pixels: resample the scene first")


def scene_bands(src: DatasetReader, bands: int | Sequence[str]) -> list[int] | None:
    """1-based indexes of the bands a model reads from a raster, None if it has not them.

    Named bands (a model's contract) are found by the raster's band descriptions when
    it has them all: a stacked optical + radar composite serves an optical-only model
    and an optical + radar one alike. Otherwise a scene has exactly the model's bands,
    and a composite (:mod:`serving.imagery.composite`) has them and, last, the count of
    clear observations, which classification skips (a pixel never seen clearly is
    already 0, no data, in every reflectance band).
    """
    if not isinstance(bands, int):
        names = list(bands)
        descriptions = list(src.descriptions or ())
        if names and all(name in descriptions for name in names):
            return [descriptions.index(name) + 1 for name in names]
        bands = len(names)
    if src.count == bands:
        return list(range(1, bands + 1))
    return composite_band_indexes(src, bands)


def check_mask(mask: DatasetReader, src: DatasetReader) -> None:
    """Refuse a clear-sky mask that is not one band on exactly the scene's grid."""
    if mask.count != 1:
        raise InputError(f"the mask must have one band (non-zero = clear); it has "
                         f"{mask.count}")
    _check_layout(mask)
    if (mask.crs, mask.transform, mask.shape) != (src.crs, src.transform, src.shape):
        raise InputError(
            f"the mask is not on the scene's grid: {mask.shape[1]} x {mask.shape[0]} px "
            f"in {mask.crs} at {tuple(mask.transform)[:6]} against {src.width} x "
            f"{src.height} px in {src.crs} at {tuple(src.transform)[:6]}")
