"""Spatially blocked train/val/test splits that scale with the data, not its extent.

Neighbouring pixels are near-duplicates, so a random pixel or patch split leaks. Whole
spatial units go to one split, by location: the same ground is in the same split at
every date, so a model is never tested on a place it saw at another date. A unit is

- a square block of a grid anchored at the data's north-west corner (``block``); only
  blocks that hold data are made, so labelled chips scattered over a continent cost
  what the chips cost, not what their bounding box costs;
- a file's footprint (``file``), overlapping footprints merged into one unit, so chip
  datasets put whole chips in one split;
- a polygon or a file named in a user-given split file (:func:`read_split_file`).

Geometry work is vectorised (shapely 2 arrays and an STR tree), never a Python loop
over blocks and index entries.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torchgeo.datasets import GeoDataset

SPLIT_NAMES = ("train", "val", "test")
#: Metres per degree of latitude (and of longitude at the equator), WGS84 mean.
METRES_PER_DEGREE = 111_320.0


class SplitError(ValueError):
    """A split that cannot be made as configured (the message says why)."""


@dataclass(frozen=True)
class BlockAssignment:
    """Which split each spatial unit went to.

    Attributes:
        blocks: Unit polygons (blocks, file footprints or user polygons) in the
            dataset's CRS.
        split: Split index (0 train, 1 val, 2 test) of each unit.
    """

    blocks: list[shapely.Geometry]
    split: list[int]

    def geometry(self, split: int) -> shapely.Geometry:
        """Union of the units of one split."""
        return shapely.union_all(
            [b for b, s in zip(self.blocks, self.split, strict=True) if s == split]
        )

    def counts(self) -> list[int]:
        """Units per split (train, val, test)."""
        return [self.split.count(s) for s in range(len(SPLIT_NAMES))]


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if not np.isclose(sum(fractions), 1) or min(fractions) <= 0:
        raise SplitError(f"split fractions must be positive and sum to 1: {fractions}")


def _assign(n: int, fractions: tuple[float, float, float], seed: int) -> list[int]:
    """Split indices of ``n`` units at random; every split gets at least one."""
    counts = np.maximum(1, np.floor(np.asarray(fractions) * n).astype(int))
    counts[0] = n - counts[1:].sum()
    order = np.random.default_rng(seed).permutation(n)
    split = np.empty(n, int)
    start = 0
    for s, c in enumerate(counts):
        split[order[start : start + c]] = s
        start += c
    return split.tolist()


def block_size_in_crs_units(
    metres: float, crs: CRS, bounds: tuple[float, float, float, float]
) -> tuple[float, float]:
    """A ground block side in metres as (width, height) in the CRS's units.

    Projected CRSs use their unit's length; geographic ones use the length of a degree
    at the latitude of the centre of ``bounds`` (so longitude blocks widen towards the
    poles and cover about the same ground as a projected block).

    Raises:
        SplitError: If ``metres`` is not positive or the CRS unit is not a length or
            an angle.
    """
    if not metres > 0:
        raise SplitError(f"block_size_m must be positive, got {metres}")
    if crs.is_geographic:
        lat = (bounds[1] + bounds[3]) / 2
        height = metres / METRES_PER_DEGREE
        width = height / max(np.cos(np.radians(lat)), 1e-6)
        return float(width), float(height)
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    if not factor:
        raise SplitError(f"cannot express metres in the units of {crs.to_string()}")
    side = metres / factor
    return side, side


def assign_blocks(
    footprints: list[shapely.Geometry] | np.ndarray,
    bounds: tuple[float, float, float, float],
    block_size: float | tuple[float, float],
    fractions: tuple[float, float, float],
    seed: int,
) -> BlockAssignment:
    """Cut the data into grid blocks and assign the blocks that hold data to splits.

    The grid is anchored at the north-west corner of ``bounds`` and holds only whole
    blocks. A block is made only where a footprint has area in it: the work is
    proportional to the footprints' area in blocks, not to the extent of ``bounds``.

    Args:
        footprints: Where the data is (index geometries), in CRS units.
        bounds: (minx, miny, maxx, maxy) of all the data.
        block_size: Block side, or (width, height), in CRS units.
        fractions: Train, val and test fractions of the blocks (summing to 1).
        seed: Seed of the assignment.

    Raises:
        SplitError: If the fractions are invalid or the data holds fewer blocks than
            splits.
    """
    _check_fractions(fractions)
    width, height = ((float(block_size), float(block_size))
                     if isinstance(block_size, int | float) else block_size)
    minx, miny, maxx, maxy = bounds
    nx = max(1, int(np.floor((maxx - minx) / width + 1e-9)))
    ny = max(1, int(np.floor((maxy - miny) / height + 1e-9)))
    geoms = np.asarray(footprints, dtype=object)
    fb = shapely.bounds(geoms)
    i0 = np.clip(np.floor((fb[:, 0] - minx) / width), 0, nx - 1).astype(np.int64)
    i1 = np.clip(np.ceil((fb[:, 2] - minx) / width) - 1, 0, nx - 1).astype(np.int64)
    j0 = np.clip(np.floor((maxy - fb[:, 3]) / height), 0, ny - 1).astype(np.int64)
    j1 = np.clip(np.ceil((maxy - fb[:, 1]) / height) - 1, 0, ny - 1).astype(np.int64)
    # every (row, column) of each footprint's bounding rectangle, without a loop
    w, h = i1 - i0 + 1, j1 - j0 + 1
    owner = np.repeat(np.arange(len(geoms)), w * h)
    k = np.arange(owner.size) - np.repeat(np.cumsum(w * h) - w * h, w * h)
    cells = np.unique((j0[owner] + k // w[owner]) * nx + i0[owner] + k % w[owner])
    cols, rows = cells % nx, cells // nx
    boxes = shapely.box(minx + cols * width, maxy - (rows + 1) * height,
                        minx + (cols + 1) * width, maxy - rows * height)
    tree = shapely.STRtree(geoms)
    box_idx, geom_idx = tree.query(boxes, predicate="intersects")
    has_area = shapely.area(shapely.intersection(boxes[box_idx], geoms[geom_idx])) > 0
    boxes = boxes[np.unique(box_idx[has_area])]  # row-major order, as made
    if len(boxes) < len(fractions):
        raise SplitError(
            f"{len(boxes)} block(s) of {width:g} x {height:g} CRS units hold data: too "
            f"few for {len(fractions)} splits; use a smaller block_size or split_by: file"
        )
    return BlockAssignment(blocks=list(boxes), split=_assign(len(boxes), fractions, seed))


def assign_files(
    index: gpd.GeoDataFrame, fractions: tuple[float, float, float], seed: int
) -> BlockAssignment:
    """Whole file footprints to splits; footprints that overlap form one unit.

    Raises:
        SplitError: If the fractions are invalid or there are fewer units than splits.
    """
    _check_fractions(fractions)
    geoms = np.asarray(index.geometry.values, dtype=object)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    overlaps = shapely.area(shapely.intersection(geoms[a], geoms[b])) > 0
    graph = coo_matrix((np.ones(overlaps.sum()), (a[overlaps], b[overlaps])),
                       shape=(len(geoms), len(geoms)))
    n, label = connected_components(graph, directed=False)
    if n < len(fractions):
        raise SplitError(f"{n} separate file footprint(s): too few for "
                         f"{len(fractions)} splits; use split_by: block")
    units = [shapely.union_all(geoms[label == u]) for u in range(n)]
    return BlockAssignment(blocks=units, split=_assign(n, fractions, seed))


def read_split_file(path: str | Path, index: gpd.GeoDataFrame) -> BlockAssignment:
    """A user-given split: polygons with a ``split`` field, or a CSV of files.

    - Any vector file GeoPandas reads (GeoJSON, GeoPackage, …) with a ``split``
      column (``train``, ``val``, ``test``): its polygons, reprojected to the dataset's
      CRS, are the units.
    - A CSV with ``file`` and ``split`` columns: ``file`` is a file name (or stem) of
      the imagery or labels; the footprints of its index entries are the unit.

    Raises:
        SplitError: If the file is unreadable, names an unknown split or file, or puts
            the same ground in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"split file {path} does not exist")
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str)
        if not {"file", "split"} <= set(table.columns):
            raise SplitError(f"{path}: a CSV split needs 'file' and 'split' columns")
        entries = _entries_by_file_name(index)
        blocks, split = [], []
        for file, name in zip(table["file"], table["split"], strict=True):
            if file not in entries:
                raise SplitError(f"{path}: no imagery or label file named {file!r}")
            blocks.append(shapely.union_all(index.geometry.values[entries[file]]))
            split.append(_split_index(path, name))
    else:
        try:
            frame = gpd.read_file(path)
        except Exception as error:  # pyogrio raises many kinds
            raise SplitError(f"{path}: not a readable vector file ({error})") from error
        if "split" not in frame.columns:
            raise SplitError(f"{path}: polygons need a 'split' column")
        if frame.crs is None:
            raise SplitError(f"{path}: the split polygons have no CRS")
        frame = frame.to_crs(index.crs)
        blocks = list(frame.geometry.values)
        split = [_split_index(path, name) for name in frame["split"]]
    for s in range(len(SPLIT_NAMES)):
        for t in range(s + 1, len(SPLIT_NAMES)):
            a = shapely.union_all([g for g, k in zip(blocks, split, strict=True) if k == s])
            b = shapely.union_all([g for g, k in zip(blocks, split, strict=True) if k == t])
            if shapely.area(shapely.intersection(a, b)) > 0:
                raise SplitError(f"{path}: {SPLIT_NAMES[s]} and {SPLIT_NAMES[t]} share "
                                 "ground; a split file must not overlap itself")
    return BlockAssignment(blocks=blocks, split=split)


def _split_index(path: Path, name: object) -> int:
    if str(name).strip().lower() not in SPLIT_NAMES:
        raise SplitError(f"{path}: unknown split {name!r} (use {', '.join(SPLIT_NAMES)})")
    return SPLIT_NAMES.index(str(name).strip().lower())


def _entries_by_file_name(index: gpd.GeoDataFrame) -> dict[str, list[int]]:
    """Positions of the index entries reading each file, by file name and by stem."""
    columns = [c for c in index.columns if str(c).startswith("filepath")]
    out: dict[str, list[int]] = {}
    for position, row in enumerate(index[columns].itertuples(index=False)):
        for f in {Path(str(v)) for v in row}:
            for key in {f.name, f.stem}:
                out.setdefault(key, []).append(position)
    return out


def split_by_blocks(dataset: GeoDataset, assignment: BlockAssignment) -> list[GeoDataset]:
    """Restrict copies of ``dataset`` to the units of each split.

    Each index entry (a file or an intersection of files, at one date) is cut into one
    entry per unit it overlaps, so samplers draw patches that never cross a unit edge.

    Raises:
        SplitError: If a split holds no data.
    """
    index = dataset.index
    geoms = np.asarray(index.geometry.values, dtype=object)
    tree = shapely.STRtree(geoms)
    blocks = np.asarray(assignment.blocks, dtype=object)
    of_split = np.asarray(assignment.split)
    out: list[GeoDataset] = []
    for split, name in enumerate(SPLIT_NAMES):
        block_idx, entry_idx = tree.query(blocks[of_split == split], predicate="intersects")
        order = np.lexsort((entry_idx, block_idx))  # block by block, entries in order
        block_idx, entry_idx = block_idx[order], entry_idx[order]
        pieces = shapely.intersection(geoms[entry_idx],
                                      blocks[of_split == split][block_idx])
        keep = ~shapely.is_empty(pieces) & (shapely.area(pieces) > 0)
        if not keep.any():
            raise SplitError(f"the {name} split holds no data: change split_fractions, "
                             "split_seed or block_size, or give it ground in split_file")
        rows = index.iloc[entry_idx[keep]]
        frame = gpd.GeoDataFrame(rows.drop(columns=rows.geometry.name),
                                 geometry=pieces[keep], crs=index.crs)
        subset = deepcopy(dataset)
        subset.index = frame
        out.append(subset)
    return out
