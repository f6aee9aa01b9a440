"""An optical composite and a period's radar statistics, stacked in one COG.

The stacked composite keeps the optical composite's bands first, as they are (its
reflectance bands, then ``clear_count``), and appends :data:`RADAR_BANDS` and
``radar_count`` on the same grid. A model reads the bands its contract names, by their
descriptions: an optical-only model reads a stacked composite as it reads an optical
one. Work goes block by block (every acquisition of one block in memory at once), a
few blocks at once on dask's threaded scheduler (``workers``), so memory is bounded by
the blocks in flight and the number of acquisitions, never by the area.

A period without radar acquisitions still gets the radar bands, all 0 (not seen), and
says so in its tags and in the result: a model trained on both sensors then classifies
from optical alone where it can, and what neither sensor saw stays no data.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from serving.files import staged
from serving.radar.acquisitions import RadarFile, read_onto
from serving.radar.statistics import ENCODING, RADAR_BANDS, RADAR_COUNT_BAND, radar_block

#: Side of the blocks the stack is computed in, in pixels.
BLOCK = 512
#: GDAL's block cache while stacking (its default, 5 % of RAM, would fill with the
#: blocks of every acquisition read and make memory grow with the area up to that).
CACHE_BYTES = 128 * 2**20


@dataclass
class StackResult:
    """What a stack wrote: the path, the radar acquisitions, what radar saw."""

    path: Path
    radar_items: list[str]
    radar_seen_fraction: float
    radar_only_fraction: float
    notes: list[str] = field(default_factory=list)


def _in_period(files: Sequence[RadarFile], period: str) -> list[RadarFile]:
    """The period's files in date order.

    The order of a search's answer or of a shell's glob must not change the sums (and
    so the bytes).
    """
    chosen = list(files)
    if period:
        start, end = period.split("/")
        chosen = [f for f in files if f.date is None or start <= f.date <= end]
    return sorted(chosen, key=lambda f: (f.date or "", f.name))


def stack_radar(optical: str | Path, files: Sequence[RadarFile], out: str | Path, *,
                period: str = "", block: int = BLOCK, workers: int = 1,
                on_block: Callable[[int, int], None] | None = None) -> StackResult:
    """Write ``optical``'s bands and the radar statistics of ``files`` as one COG.

    Args:
        optical: The period's optical composite (its grid is the stack's grid).
        files: The radar acquisitions (:func:`serving.radar.acquisitions.describe`);
            those dated outside ``period`` are left out.
        out: The stacked COG (never a partial file).
        period: ``START/END`` (ISO dates); empty: every file.
        block: Block side in pixels.
        workers: Blocks computed at once on dask's threaded scheduler (memory: this
            many blocks of every acquisition in flight; 1 in a store, whose cells are
            the parallelism).
        on_block: Called with (blocks done, blocks in all).

    Raises:
        ValueError: ``optical`` already holds radar bands.
    """
    chosen = _in_period(files, period)
    out = Path(out)
    notes = []
    if not chosen:
        notes.append(f"no radar acquisitions in the period {period or '(any)'}: the radar "
                     "bands are empty; pixels are classified from optical alone")
    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES), rasterio.open(optical) as src:
        descriptions = tuple(src.descriptions or ())
        if RADAR_COUNT_BAND in descriptions:
            raise ValueError(f"{optical} already holds radar bands")
        profile = src.profile | {
            "count": src.count + len(RADAR_BANDS) + 1, "tiled": True, "blockxsize": 256,
            "blockysize": 256, "interleave": "pixel", "BIGTIFF": "IF_SAFER",
            "dtype": "uint16", "nodata": 0, "driver": "GTiff"}
        profile.pop("compress", None)
        tags = src.tags() | {
            "RADAR_ITEMS": json.dumps([f.name for f in chosen]),
            "RADAR_UNITS_READ": json.dumps({f.name: f.units for f in chosen}),
            "RADAR_ENCODING": ENCODING, "RADAR_BANDS": ",".join(RADAR_BANDS),
            "RADAR_SPECKLE_FILTER": json.dumps(sorted({f.speckle.describe()
                                                       for f in chosen})),
            "RADAR_NOTES": json.dumps(notes)}
        windows = [Window(c, r, min(block, src.width - c), min(block, src.height - r))
                   for r in range(0, src.height, block) for c in range(0, src.width, block)]
        seen = radar_only = 0
        with staged(out, suffix=".cog.tif") as cog, \
                tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
            blocks = Path(tmp) / "blocks.tif"
            with rasterio.open(blocks, "w", **profile) as dst:
                dst.descriptions = (*descriptions, *RADAR_BANDS, RADAR_COUNT_BAND)
                dst.update_tags(**tags)
                done = 0
                for start in range(0, len(windows), max(1, workers)):
                    batch = windows[start:start + max(1, workers)]
                    radars = dask.compute(
                        *(dask.delayed(_radar_block)(
                            chosen, src.crs, src.window_transform(w), int(w.height),
                            int(w.width)) for w in batch),
                        scheduler="threads" if workers > 1 else "synchronous",
                        num_workers=max(1, workers))
                    for window, radar in zip(batch, radars, strict=True):
                        optical_block = src.read(window=window)
                        dst.write(np.concatenate([optical_block.astype(np.uint16), radar]),
                                  window=window)
                        by_radar = radar[-1] > 0
                        optical_seen = (optical_block[:-1] != 0).any(axis=0)
                        seen += int(by_radar.sum())
                        radar_only += int((by_radar & ~optical_seen).sum())
                        done += 1
                        if on_block:
                            on_block(done, len(windows))
            rasterio.shutil.copy(blocks, cog, driver="COG", compress="DEFLATE", predictor=2,
                                 blocksize=512, overview_resampling="NEAREST")
        pixels = src.width * src.height
    return StackResult(out, [f.name for f in chosen], seen / pixels, radar_only / pixels,
                       notes)


def _radar_block(files: Sequence[RadarFile], crs: object, transform: object, height: int,
                 width: int) -> np.ndarray:
    if not files:
        return np.zeros((len(RADAR_BANDS) + 1, height, width), np.uint16)
    vv = np.stack([read_onto(f.vv, f.units, f.mask, crs, transform, height, width,
                             f.speckle) for f in files])
    vh = np.stack([read_onto(f.vh, f.units, f.mask, crs, transform, height, width,
                             f.speckle)
                   if f.vh else np.full((height, width), np.nan, np.float32)
                   for f in files])
    return radar_block(vv, vh)
