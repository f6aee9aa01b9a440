"""Spatially blocked train/val/test splits.

Neighbouring pixels are near-duplicates, so a random pixel or patch split leaks. The
scene is cut into square blocks and whole blocks go to one split. Unlike TorchGeo's
``random_grid_cell_assignment`` (which draws cells per file), the assignment is by
location: the same ground is in the same split at every date, so a model is never
tested on a place it saw at another date.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from geopandas import GeoDataFrame
from torchgeo.datasets import GeoDataset

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class BlockAssignment:
    """Which split each block went to.

    Attributes:
        blocks: Block polygons in the dataset's CRS.
        split: Split index (0 train, 1 val, 2 test) of each block.
    """

    blocks: list[shapely.Polygon]
    split: list[int]

    def geometry(self, split: int) -> shapely.Geometry:
        """Union of the blocks of one split."""
        return shapely.union_all(
            [b for b, s in zip(self.blocks, self.split, strict=True) if s == split]
        )


def assign_blocks(
    bounds: tuple[float, float, float, float],
    block_size: float,
    fractions: tuple[float, float, float],
    seed: int,
) -> BlockAssignment:
    """Cut ``bounds`` into square blocks and assign them to splits at random.

    Every split gets at least one block; the rest follow ``fractions``.

    Args:
        bounds: (minx, miny, maxx, maxy) in CRS units.
        block_size: Block side in CRS units.
        fractions: Train, val and test fractions (summing to 1).
        seed: Seed of the assignment.

    Raises:
        ValueError: If the fractions are invalid or the area holds fewer than three
            blocks.
    """
    if not np.isclose(sum(fractions), 1) or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1: {fractions}")
    minx, miny, maxx, maxy = bounds
    nx = max(1, int(np.floor((maxx - minx) / block_size + 1e-9)))
    ny = max(1, int(np.floor((maxy - miny) / block_size + 1e-9)))
    n = nx * ny
    if n < len(fractions):
        raise ValueError(
            f"{n} block(s) of {block_size} units do not make {len(fractions)} splits; "
            "use a smaller block_size"
        )
    blocks = [
        shapely.box(
            minx + i * block_size,
            maxy - (j + 1) * block_size,
            minx + (i + 1) * block_size,
            maxy - j * block_size,
        )
        for j in range(ny)
        for i in range(nx)
    ]
    counts = np.maximum(1, np.floor(np.asarray(fractions) * n).astype(int))
    counts[0] = n - counts[1:].sum()
    order = np.random.default_rng(seed).permutation(n)
    split = np.empty(n, int)
    start = 0
    for s, c in enumerate(counts):
        split[order[start : start + c]] = s
        start += c
    return BlockAssignment(blocks=blocks, split=split.tolist())


def split_by_blocks(
    dataset: GeoDataset, assignment: BlockAssignment
) -> list[GeoDataset]:
    """Restrict copies of ``dataset`` to the blocks of each split.

    Each index entry (a file or an intersection of files, at one date) is cut into one
    entry per block, so samplers draw patches that never cross a block edge.
    """
    index = dataset.index
    out: list[GeoDataset] = []
    for split in range(len(SPLIT_NAMES)):
        rows, geoms, intervals = [], [], []
        for block, s in zip(assignment.blocks, assignment.split, strict=True):
            if s != split:
                continue
            for i in range(len(index)):
                piece = shapely.intersection(index.geometry.iloc[i], block)
                if piece.is_empty or piece.area <= 0:
                    continue
                rows.append(index.iloc[i].drop(labels="geometry"))
                geoms.append(piece)
                intervals.append(index.index[i])
        subset = deepcopy(dataset)
        frame = GeoDataFrame(
            [r.to_dict() for r in rows], geometry=geoms, crs=index.crs
        )
        frame.index = pd.IntervalIndex(
            intervals, closed=index.index.closed, name=index.index.name
        )
        subset.index = frame
        out.append(subset)
    return out
