"""Per-period composites of clear observations, computed on dask, written as a COG.

For each pixel of a period's acquisitions (:mod:`serving.imagery.sources`), the
composite holds

- ``median`` (default): the median of the clear observations, band by band; or
- ``best``: the one clear observation with the highest NDVI (all bands of one date),

and one more band, :data:`COUNT_BAND`, with the number of clear observations. A pixel
never seen clearly is 0 (no data) in every band: classified, it is nodata, so a cloud
never becomes a class, let alone a loss of forest.

The work is a dask graph of blocks (:data:`serving.imagery.sources.DEFAULT_CHUNK` px
square, every date of a block in one task), computed a few blocks at a time on the
local scheduler or on a ``dask.distributed`` cluster, so memory is bounded by the block
size times the number of dates, not by the area. The same blocks give the same bytes on
either scheduler.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.windows import Window

from serving.files import staged
from serving.imagery.sources import Acquisition, Grid, Loaded

#: Description of the band holding the number of clear observations.
COUNT_BAND = "clear_count"
#: How a composite picks a value per pixel.
Method = Literal["median", "best"]


class CompositeError(ValueError):
    """A composite that cannot be made; the message names the problem."""


def composite_block(stack: NDArray[np.float32], clear: NDArray[np.bool_], method: Method,
                    red: int | None = None, nir: int | None = None) -> NDArray[np.uint16]:
    """One block of a composite: reflectance bands then the clear count, as uint16.

    Args:
        stack: (dates, bands, H, W) harmonised DN, NaN = no data.
        clear: (dates, H, W) True = clear observation.
        method: ``median`` or ``best`` (highest NDVI).
        red: Band index of red (``best`` only).
        nir: Band index of near infrared (``best`` only).

    Returns:
        (bands + 1, H, W) uint16; 0 in every band where no observation is clear.
    """
    usable = clear & np.isfinite(stack).all(axis=1)
    count = usable.sum(axis=0)
    # In place where the block is ours to change (dask hands each task its own block):
    # fresh (dates, bands, H, W) temporaries cost more in page faults than the median.
    values = stack if stack.flags.writeable and stack.dtype == np.float32 else \
        stack.astype(np.float32)
    np.copyto(values, np.float32(np.nan), where=~usable[:, None])
    seen = count > 0
    if method == "median":
        picked = _median_of_usable(values, count)
    else:
        if red is None or nir is None:
            raise CompositeError("the best-pixel composite needs the red and NIR bands")
        with np.errstate(all="ignore"):
            ndvi = (values[:, nir] - values[:, red]) / (values[:, nir] + values[:, red])
        ndvi = np.where(usable, ndvi, -np.inf)
        best = np.argmax(ndvi, axis=0)
        picked = np.take_along_axis(values, best[None, None], axis=0)[0]
    out = np.zeros((stack.shape[1] + 1, *stack.shape[2:]), np.uint16)
    out[:-1] = np.where(seen, np.clip(np.rint(np.nan_to_num(picked)), 1, 65535), 0)
    out[-1] = np.minimum(count, 65535)
    return out


def _median_of_usable(values: NDArray[np.float32], count: NDArray[np.integer[Any]]
                      ) -> NDArray[np.float32]:
    """Per pixel and band, the median of the finite values over dates (NaN last).

    What ``np.nanmedian(values, axis=0)`` gives (the mean of the two middle values for
    an even count), by one sort along the dates and two gathers: ``nanmedian`` goes
    through masked arrays for short axes, several times slower and a copy per step.
    Pixels with no usable date get NaN.
    """
    values.sort(axis=0)  # NaN sorts last; the caller's array, sorted in place
    n = count[None].astype(np.int64)
    low = np.maximum((n - 1) // 2, 0)
    high = np.maximum(n // 2, 0)
    shape = (1, values.shape[1], *values.shape[2:])
    low = np.broadcast_to(low[:, None], shape)
    high = np.broadcast_to(high[:, None], shape)
    a = np.take_along_axis(values, low, axis=0)[0]
    b = np.take_along_axis(values, high, axis=0)[0]
    median = (a + b) * np.float32(0.5)
    median[:, count == 0] = np.nan
    return median


def composite_array(acquisitions: Sequence[Acquisition], method: Method = "median"
                    ) -> Any:
    """The lazy composite: a (bands + 1, H, W) uint16 dask array.

    Raises:
        CompositeError: No acquisitions, or acquisitions on different grids or bands.
    """
    import dask.array as da

    if not acquisitions:
        raise CompositeError("no acquisitions to composite")
    first = acquisitions[0]
    for acq in acquisitions[1:]:
        if acq.bands.shape != first.bands.shape or acq.band_names != first.band_names:
            raise CompositeError(f"{acq.item_id} is not on the grid and bands of "
                                 f"{first.item_id}")
    names = first.band_names
    red = names.index("B04") if "B04" in names else None
    nir = names.index("B08") if "B08" in names else None
    if method == "best" and (red is None or nir is None):
        raise CompositeError("the best-pixel composite needs bands B04 and B08")
    stack = da.stack([a.bands for a in acquisitions])
    clear = da.stack([a.clear for a in acquisitions])
    chunks = first.bands.chunks[1:]
    stack = stack.rechunk((-1, -1, *chunks))
    clear = clear.rechunk((-1, *chunks))
    return da.map_blocks(
        composite_block, stack, clear, method, red, nir, dtype=np.uint16,
        drop_axis=0, chunks=((len(names) + 1,), *chunks),
    )


@dataclass
class CompositeResult:
    """What a composite run wrote."""

    path: Path
    items: list[str]
    skipped: dict[str, str]
    clear_fraction: float
    never_clear_fraction: float


def lineage(loaded: Loaded, method: Method, period: str) -> dict[str, str]:
    """GeoTIFF tags that say how a composite was made (item ids, masks, offsets)."""
    acqs = loaded.acquisitions
    return {
        "CACAOMAP_COMPOSITE_METHOD": method,
        "CACAOMAP_PERIOD": period,
        "CACAOMAP_ITEMS": json.dumps([a.item_id for a in acqs]),
        "CACAOMAP_MASK_SOURCE": ",".join(sorted({a.mask_source for a in acqs})),
        "CACAOMAP_PROCESSING_BASELINES": json.dumps(
            {a.item_id: a.processing_baseline for a in acqs}),
        "CACAOMAP_BOA_OFFSETS_REMOVED": json.dumps(
            {a.item_id: sorted(set(a.offsets.values())) for a in acqs}),
        "CACAOMAP_SKIPPED_ITEMS": json.dumps(loaded.skipped),
        "CACAOMAP_REPROJECTED_ITEMS": json.dumps(loaded.reprojected),
        "CACAOMAP_GRID": json.dumps({"crs": loaded.grid.crs,
                                     "resolution": loaded.grid.resolution,
                                     "bounds": loaded.grid.bounds}),
    }


def write_composite(
    loaded: Loaded,
    dst: str | Path,
    *,
    method: Method = "median",
    period: str = "",
    date: str | None = None,
    scheduler: str | None = None,
    blocks_at_once: int = 4,
    on_block: Callable[[int, int], None] | None = None,
) -> CompositeResult:
    """Compute a composite block by block and write it as a COG (never a partial file).

    Args:
        loaded: Acquisitions of one period on one grid.
        dst: Output COG path.
        method: ``median`` or ``best``.
        period: The period (``START/END``), for the lineage.
        date: ``YYYYMMDD`` written as the composite's ``DATE`` tag (default: the end of
            the period, else the last acquisition's date).
        scheduler: A ``dask.distributed`` scheduler address (``tcp://host:8786``);
            default the local threaded scheduler.
        blocks_at_once: Blocks computed together (memory: this many blocks of every
            date in flight).
        on_block: Called with (blocks done, blocks in all) for progress.

    Returns:
        The written path, item ids, skipped items and clear fractions.
    """
    import dask

    array = composite_array(loaded.acquisitions, method)
    grid: Grid = loaded.grid
    height, width = array.shape[1:]
    transform = grid.geobox().affine
    names = loaded.acquisitions[0].band_names
    if date is None:
        end = period.split("/")[-1] if period else ""
        date = (end.replace("-", "") if end else
                loaded.acquisitions[-1].datetime.strftime("%Y%m%d"))
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": len(names) + 1,
        "dtype": "uint16", "crs": grid.crs, "transform": transform, "nodata": 0,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    row_chunks, col_chunks = array.chunks[1:]
    starts_r = np.cumsum((0, *row_chunks))
    starts_c = np.cumsum((0, *col_chunks))
    keys = [(i, j) for i in range(len(row_chunks)) for j in range(len(col_chunks))]
    client = _client(scheduler)
    dst = Path(dst)
    tally = {"seen": 0, "clear": 0, "done": 0}

    def window(key: tuple[int, int]) -> Window:
        i, j = key
        return Window(int(starts_c[j]), int(starts_r[i]), int(starts_c[j + 1] - starts_c[j]),
                      int(starts_r[i + 1] - starts_r[i]))

    def part(key: tuple[int, int]) -> Any:
        w = window(key)
        return array[:, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width]

    with client or nullcontext(), staged(dst, suffix=".cog.tif") as cog, \
            tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=dst.parent) as scratch:
        blocks_path = Path(scratch) / "blocks.tif"
        with rasterio.open(blocks_path, "w", **profile) as out:
            out.descriptions = (*names, COUNT_BAND)
            out.update_tags(DATE=date, SCALE="0.0001", **lineage(loaded, method, period))

            def put(key: tuple[int, int], block: np.ndarray) -> None:
                out.write(block, window=window(key))
                tally["seen"] += int((block[-1] > 0).sum())
                tally["clear"] += int(block[-1].sum())
                tally["done"] += 1
                if on_block:
                    on_block(tally["done"], len(keys))

            if client is not None:
                # One submission of every block, written as each arrives (the cluster's
                # memory manager bounds what waits). Submitting batch after batch
                # re-sends shared input keys with other task specs, which the scheduler
                # refuses.
                from distributed import as_completed

                futures = client.compute([part(key) for key in keys])
                where = {future.key: key for future, key in zip(futures, keys, strict=True)}
                for future, block in as_completed(futures, with_results=True):
                    put(where[future.key], block)
                    future.release()
            else:
                for k in range(0, len(keys), blocks_at_once):
                    batch = keys[k: k + blocks_at_once]
                    for key, block in zip(batch, dask.compute(*(part(b) for b in batch)),
                                          strict=True):
                        put(key, block)
        rasterio.shutil.copy(blocks_path, cog, driver="COG", compress="DEFLATE",
                             predictor=2, blocksize=512, overview_resampling="NEAREST")
    pixels = height * width
    return CompositeResult(
        path=dst, items=[a.item_id for a in loaded.acquisitions], skipped=loaded.skipped,
        clear_fraction=tally["clear"] / (pixels * len(loaded.acquisitions)),
        never_clear_fraction=1 - tally["seen"] / pixels,
    )


def _client(scheduler: str | None) -> Any:
    """A dask.distributed client for ``scheduler``, or None for the local scheduler."""
    if not scheduler:
        return None
    from distributed import Client

    return Client(scheduler)


def composite_band_indexes(src: Any, num_bands: int) -> list[int] | None:
    """1-based indexes of a raster's reflectance bands if it is a composite, else None.

    A composite has the model's bands and, last, :data:`COUNT_BAND`.
    """
    descriptions = src.descriptions or ()
    if src.count == num_bands + 1 and descriptions and descriptions[-1] == COUNT_BAND:
        return list(range(1, num_bands + 1))
    return None
