"""The simulated labelling pool of ``cacaomap model active-learning``: ground, candidates, picks.

- :func:`split_ground`: the images split once into pool, validation and test ground,
  written as a split file;
- :func:`draw_pixels`: pixels of known truth drawn at random from a part of the ground
  (:class:`Candidates`);
- :func:`most_uncertain`: the next labels of the uncertainty strategy, spread apart;
- :func:`write_points`, :func:`add_corners`: a round's labels as the GeoJSON it trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.crossval import write_split_csv


@dataclass
class Ground:
    """The split of the images: the split file and the ground of each part."""

    split_file: Path
    pool: Any
    val: Any
    test: Any
    crs: Any


@dataclass
class Candidates:
    """Pixels with known truth: where they are and what they are.

    Attributes:
        image: Index of the image each pixel lies in.
        row: Row of the pixel in its image.
        col: Column of the pixel in its image.
        x: x of the pixel's centre in the images' CRS.
        y: y of the pixel's centre in the images' CRS.
        code: The true class code.
    """

    image: NDArray[np.int64]
    row: NDArray[np.int64]
    col: NDArray[np.int64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    code: NDArray[np.int64]

    def __len__(self) -> int:
        """Number of candidates."""
        return len(self.code)


def split_ground(images: list[Path], holdout: float, seed: int, folder: Path) -> Ground:
    """Pool, validation and test ground of the images, written as a split file.

    Raises:
        ValueError: If the images are not in one CRS, or too few chips to hold out.
    """
    import geopandas as gpd
    import rasterio
    import shapely

    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), not {holdout}")
    boxes, crs = [], None
    for image in images:
        with rasterio.open(image) as src:
            if crs is not None and src.crs != crs:
                raise ValueError(f"{image.name} is in {src.crs}, the others in {crs}: "
                                 "active learning needs the images in one CRS")
            crs = src.crs
            boxes.append(shapely.box(*src.bounds))
    folder.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        minx, miny, maxx, maxy = boxes[0].bounds
        cut_x = minx + (1 - holdout) * (maxx - minx)
        mid_y = (miny + maxy) / 2
        parts = {"train": shapely.box(minx, miny, cut_x, maxy),
                 "val": shapely.box(cut_x, mid_y, maxx, maxy),
                 "test": shapely.box(cut_x, miny, maxx, mid_y)}
        path = folder / "split.geojson"
        gpd.GeoDataFrame({"split": list(parts)}, geometry=list(parts.values()),
                         crs=crs).to_file(path, driver="GeoJSON")
        return Ground(path, parts["train"], parts["val"], parts["test"], crs)
    n_out = max(2, round(holdout * len(images)))
    if len(images) - n_out < 1:
        raise ValueError(f"{len(images)} chips are too few to hold out {n_out}")
    order = np.random.default_rng(seed).permutation(len(images))
    split = {int(i): "train" for i in order[n_out:]}
    split.update({int(i): "val" for i in order[: n_out // 2]})
    split.update({int(i): "test" for i in order[n_out // 2 : n_out]})
    path = write_split_csv(folder / "split.csv",
                           {images[i].name: s for i, s in split.items()})
    ground = {s: shapely.union_all([boxes[i] for i, t in split.items() if t == s])
              for s in ("train", "val", "test")}
    return Ground(path, ground["train"], ground["val"], ground["test"], crs)


def draw_pixels(images: list[Path], truth: list[Path], area: Any, crs: Any, count: int,
                rng: np.random.Generator, nodata: int = 0,
                label_map: dict[int, int] | None = None) -> Candidates:
    """``count`` labelled pixels drawn at random (uniformly) from the truth in ``area``.

    Raises:
        ValueError: If the area holds no labelled pixel.
    """
    import rasterio

    from serving.inference.evaluation import labels_on_grid, pixels_within

    found: list[tuple[int, NDArray[Any], NDArray[Any], NDArray[Any]]] = []
    profiles = []
    for k, (image, labels) in enumerate(zip(images, truth, strict=True)):
        with rasterio.open(image) as src:
            profile = src.profile
        profiles.append(profile)
        inside = pixels_within((area, crs), profile)
        if not inside.any():
            continue
        codes = labels_on_grid(labels, profile, label_map=label_map, nodata=nodata)
        rows, cols = np.nonzero(inside & (codes != nodata))
        found.append((k, rows, cols, codes[rows, cols]))
    total = sum(len(r) for _, r, _, _ in found)
    if total == 0:
        raise ValueError("no labelled pixel in the area to draw from: do the truth "
                         "rasters cover the images, and does label_map cover their codes?")
    pick = np.sort(rng.choice(total, size=min(count, total), replace=False))
    image_of = np.concatenate([np.full(len(r), k) for k, r, _, _ in found])[pick]
    rows = np.concatenate([r for _, r, _, _ in found])[pick]
    cols = np.concatenate([c for _, _, c, _ in found])[pick]
    codes = np.concatenate([v for _, _, _, v in found])[pick]
    xs, ys = np.empty(len(pick)), np.empty(len(pick))
    for k in np.unique(image_of):
        at = image_of == k
        xs[at], ys[at] = rasterio.transform.xy(profiles[k]["transform"], rows[at],
                                               cols[at])
    return Candidates(image_of.astype(np.int64), rows.astype(np.int64),
                      cols.astype(np.int64), xs, ys, codes.astype(np.int64))


def most_uncertain(uncertainty: NDArray[np.float64], candidates: Candidates,
                   taken: set[int], batch: int, min_spacing: float) -> list[int]:
    """The ``batch`` untaken candidates of highest uncertainty, ``min_spacing`` apart.

    Spacing is in the images' CRS units, between the new picks and the labels already
    taken; candidates the model could not see (NaN) come last.
    """
    order = np.argsort(-np.nan_to_num(uncertainty, nan=-1.0), kind="stable")
    chosen: list[int] = []
    near = sorted(taken)
    for i in order:
        if len(chosen) == batch:
            break
        if int(i) in taken:
            continue
        if near:
            dist = np.hypot(candidates.x[near] - candidates.x[i],
                            candidates.y[near] - candidates.y[i])
            if dist.min() < min_spacing:
                continue
        chosen.append(int(i))
        near.append(int(i))
    return chosen


def write_points(path: Path, candidates: Candidates, picked: list[int], crs: Any,
                 extra: Candidates | None = None) -> Path:
    """The labelled points (and the validation points) as GeoJSON with ``label``."""
    import geopandas as gpd

    xs, ys = list(candidates.x[picked]), list(candidates.y[picked])
    codes = list(candidates.code[picked])
    if extra is not None:
        xs, ys, codes = xs + list(extra.x), ys + list(extra.y), codes + list(extra.code)
    frame = gpd.GeoDataFrame({"label": np.asarray(codes, dtype=np.int64)},
                             geometry=gpd.points_from_xy(xs, ys), crs=crs)
    frame.to_file(path, driver="GeoJSON")
    return path


def add_corners(labels: Path, images: list[Path]) -> None:
    """Unlabelled points at the images' corners: the labels' extent covers every split.

    torchgeo indexes a vector file by its extent; without them, a split whose ground
    holds no labelled point (the test part: scored outside the trainer) would be empty.
    They burn no pixel (``label: null``).
    """
    import geopandas as gpd
    import pandas as pd
    import rasterio
    import shapely

    frame = gpd.read_file(labels)
    corners = []
    for image in images:
        with rasterio.open(image) as src:
            b = src.bounds
            corners += [shapely.Point(b.left, b.bottom), shapely.Point(b.right, b.top)]
    extra = gpd.GeoDataFrame({"label": [None] * len(corners)}, geometry=corners,
                             crs=frame.crs)
    joined = gpd.GeoDataFrame(pd.concat([frame, extra], ignore_index=True), crs=frame.crs)
    joined.to_file(labels, driver="GeoJSON")
