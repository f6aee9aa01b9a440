"""Stacked GeoTIFFs as acquisitions: today's pre-stacked input, read window by window.

Each file is one date (its ``DATE`` tag, ``YYYYMMDD``) with the model's bands in order
as DN x 10000; an optional one-band mask file per image (non-zero = clear) on exactly
its grid, or the cloud model, says which pixels are clear. All files must share one
grid: there is no reprojection here (STAC items are the way for that).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from serving.imagery.harmonise import harmonised
from serving.imagery.masks import MaskSource
from serving.imagery.sources import (
    DEFAULT_CHUNK,
    DEFAULT_CLOUD_BUFFER,
    Acquisition,
    Grid,
    ImageryError,
    Loaded,
    csmask_of,
)


class _WindowReader:
    """A raster's bands as an array-like that reads only the windows asked for.

    ``dask.array.from_array`` over it reads block by block (picklable: it holds a path).
    """

    def __init__(self, path: Path, indexes: list[int], dtype: str, shape: tuple[int, int]
                 ) -> None:
        self.path, self.indexes = path, indexes
        self.dtype = np.dtype(dtype)
        self.shape = (len(indexes), *shape)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = key
        from rasterio.windows import Window

        r0, r1, _ = rows.indices(self.shape[1])
        c0, c1, _ = cols.indices(self.shape[2])
        with rasterio.open(self.path) as src:
            data = src.read(self.indexes, window=Window(c0, r0, c1 - c0, r1 - r0))
        return data[bands]


def acquisition_from_geotiff(path: str | Path, bands: Sequence[str],
                             mask_file: str | Path | None = None,
                             chunk: int = DEFAULT_CHUNK) -> Acquisition:
    """A stacked GeoTIFF (bands in model order, DN x 10000) as one lazy acquisition.

    Args:
        path: The GeoTIFF; its ``DATE`` tag (``YYYYMMDD``) gives the date.
        bands: Names of its bands, in order.
        mask_file: Optional one-band raster on the same grid, non-zero = clear.
        chunk: Dask chunk side in pixels (windows are read as blocks are computed).

    Raises:
        ImageryError: Band count, or a mask whose grid differs from the image's.
    """
    import dask.array as da

    path = Path(path)
    with rasterio.open(path) as src:
        if src.count < len(bands):
            raise ImageryError(f"{path.name} has {src.count} bands; {len(bands)} expected")
        nodata = src.nodata if src.nodata is not None else 0
        date = src.tags().get("DATE")
        grid = (src.crs, src.transform, src.shape)
        raw = da.from_array(
            _WindowReader(path, list(range(1, len(bands) + 1)), src.dtypes[0], src.shape),
            chunks=(-1, chunk, chunk), asarray=True)
    stack = raw.map_blocks(harmonised, 0.0, nodata, dtype=np.float32)
    observed = da.isfinite(stack).all(axis=0)
    source: MaskSource = "none"
    clear = observed
    if mask_file is not None:
        mask_file = Path(mask_file)
        with rasterio.open(mask_file) as msk:
            if (msk.crs, msk.transform, msk.shape) != grid:
                raise ImageryError(f"the mask {mask_file.name} is not on the grid of "
                                   f"{path.name} (CRS, transform or size differ)")
            mask = da.from_array(_WindowReader(mask_file, [1], msk.dtypes[0], msk.shape),
                                 chunks=(-1, chunk, chunk), asarray=True)[0]
        clear = observed & (mask != 0)
        source = "file"
    when = (dt.datetime.strptime(date, "%Y%m%d").replace(tzinfo=dt.UTC) if date
            else dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC))
    return Acquisition(item_id=path.stem, datetime=when, bands=stack, clear=clear,
                       band_names=list(bands), mask_source=source)


def load_geotiffs(paths: Sequence[str | Path], bands: Sequence[str],
                  mask_files: Sequence[str | Path] | None = None,
                  chunk: int = DEFAULT_CHUNK, mask: MaskSource | None = None,
                  cloud_buffer: int = DEFAULT_CLOUD_BUFFER) -> Loaded:
    """Stacked GeoTIFFs on one grid (with optional mask files, one per image).

    ``mask="csmask"`` runs the cloud model on each image (on top of any mask file).

    Raises:
        ImageryError: No files, masks not one per image, or images on different grids.
    """
    if not paths:
        raise ImageryError("no GeoTIFFs given")
    if mask_files is not None and len(mask_files) != len(paths):
        raise ImageryError(f"{len(mask_files)} mask files for {len(paths)} images: give "
                           "one per image, in the same order")
    grids = []
    for path in paths:
        with rasterio.open(path) as src:
            grids.append((src.crs, src.transform, src.shape, src.bounds, src.res[0]))
    if any(g[:3] != grids[0][:3] for g in grids[1:]):
        raise ImageryError("the GeoTIFFs are not on one grid (CRS, transform, size): "
                           "warp them onto one first, or give them as STAC items")
    crs, _, _, bounds, res = grids[0]
    acquisitions = sorted(
        (acquisition_from_geotiff(p, bands, mask_files[i] if mask_files else None, chunk)
         for i, p in enumerate(paths)), key=lambda a: (a.datetime, a.item_id))
    if mask == "csmask":
        for acq in acquisitions:
            acq.clear = acq.clear & csmask_of(acq.bands, bands, cloud_buffer)
            acq.mask_source = "csmask"
    return Loaded(acquisitions, Grid(crs=str(crs), resolution=float(res),
                                     bounds=tuple(bounds)))  # type: ignore[arg-type]
