"""Labelled arrays without georeferencing → GeoTIFF chips the data module can read.

Some real labelled sets ship as arrays (e.g. the human-labelled cloud and shadow masks
of Wieland et al. 2019, ``.npz`` with ``img`` H x W x bands reflectance and ``msk``
H x W codes). The trainer reads GeoTIFFs with a CRS, so each array is cut into square
chips on a *local* grid: EPSG:3857 metres with the array's nominal pixel size, each
source placed far from the others so that no two chips overlap. The grid carries no
geographic meaning (it says so in every file's ``georeferencing`` tag): use these chips
for training and scoring, never for hectares.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from serving.files import staged

#: CRS of the local grid (metres); the placement is arbitrary.
LOCAL_CRS = "EPSG:3857"
#: Distance between the origins of two sources on the local grid (metres).
SOURCE_SPACING_M = 1_000_000.0
GEOREFERENCING_TAG = ("local grid: the source arrays are not georeferenced; "
                      "positions and areas are meaningless")


def write_array_chips(
    sources: Sequence[Path], out: Path, size: int = 128, image_key: str = "img",
    mask_key: str = "msk", pixel_size: float = 30.0, overwrite: bool = False,
) -> list[Path]:
    """Cut each ``.npz`` source into ``size`` px chips: ``out/images`` and ``out/labels``.

    Chips are named ``<source stem>_<row>_<col>.tif`` in both folders (images float32
    bands-first as stored, labels uint8 codes as stored); an edge that does not make a
    whole chip is left out. The folder is written all at once.

    Returns:
        The image chips written.

    Raises:
        ValueError: If a source lacks a key, its image and mask grids differ, it is
            smaller than one chip, or ``out`` exists and ``overwrite`` is false.
    """
    if size <= 0 or pixel_size <= 0:
        raise ValueError(f"size and pixel_size must be positive: {size}, {pixel_size}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists (pass overwrite to replace it)")
    written: list[str] = []
    with staged(out, directory=True) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for k, source in enumerate(sources):
            with np.load(source) as data:
                missing = {image_key, mask_key} - set(data.files)
                if missing:
                    raise ValueError(f"{source} has no {sorted(missing)} (keys: {data.files})")
                image, mask = data[image_key], data[mask_key]
            image = image if image.ndim == 3 else image[..., None]
            mask = mask[..., 0] if mask.ndim == 3 else mask
            if image.shape[:2] != mask.shape:
                raise ValueError(f"{source}: image {image.shape[:2]} and mask {mask.shape} "
                                 "grids differ")
            rows, cols = mask.shape[0] // size, mask.shape[1] // size
            if rows == 0 or cols == 0:
                raise ValueError(f"{source}: {mask.shape} is smaller than one {size} px chip")
            west = k * SOURCE_SPACING_M
            for r in range(rows):
                for c in range(cols):
                    window = np.s_[r * size:(r + 1) * size, c * size:(c + 1) * size]
                    name = f"{source.stem}_{r}_{c}.tif"
                    profile = {
                        "driver": "GTiff", "width": size, "height": size, "crs": LOCAL_CRS,
                        "transform": from_origin(west + c * size * pixel_size,
                                                 -r * size * pixel_size, pixel_size,
                                                 pixel_size)}
                    bands = np.moveaxis(image[window], -1, 0).astype(np.float32)
                    with rasterio.open(tmp / "images" / name, "w", count=bands.shape[0],
                                       dtype="float32", **profile) as dst:
                        dst.write(bands)
                        dst.update_tags(georeferencing=GEOREFERENCING_TAG,
                                        source=source.name)
                    with rasterio.open(tmp / "labels" / name, "w", count=1, dtype="uint8",
                                       **profile) as dst:
                        dst.write(mask[window].astype(np.uint8), 1)
                        dst.update_tags(georeferencing=GEOREFERENCING_TAG,
                                        source=source.name)
                    written.append(name)
        if out.exists():
            shutil.rmtree(out)
    return [out / "images" / name for name in written]
