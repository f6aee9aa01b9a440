"""Samplers of our own: whole chips for evaluation, patches at sparse labelled points.

Whole chips as validation and test samples: the same pixels every epoch, all of them.

torchgeo's ``GridGeoSampler`` compares a chip's extent with the window size in CRS
units and drops a chip whose extent falls short by a rounding error (a 512-px chip in
EPSG:4326 is rarely exactly 512 pixels wide in floating point), and cuts a larger chip
into windows. :class:`WholeChipSampler` yields one square window of ``side`` pixels per
chip, anchored at its upper-left corner: with chips of one size (the small-data case),
every chip whole, once, in index order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import shapely
import torch
from numpy.typing import NDArray
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import GeoSampler


class WholeChipSampler(GeoSampler):
    """One ``side`` x ``side`` px window per chip of ``dataset``, at its upper-left corner."""

    def __init__(self, dataset: GeoDataset, side: int) -> None:
        """Sample each index entry of ``dataset`` once.

        Args:
            dataset: The split's dataset (its index entries are the chips).
            side: Window side in pixels (the chips' side).
        """
        super().__init__(dataset)
        if side <= 0:
            raise ValueError(f"side must be positive; got {side}")
        self.side = side

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        """The chips' windows, in index order."""
        width, height = self.side * self.res[0], self.side * self.res[1]
        for i in range(len(self.index)):
            xmin, _, _, ymax = self.index.geometry.iloc[i].bounds
            interval = self.index.index[i]
            yield (slice(xmin, xmin + width), slice(ymax - height, ymax),
                   slice(interval.left, interval.right))

    def __len__(self) -> int:
        """Chips in the split."""
        return len(self.index)


class LabelledPatchSampler(GeoSampler):
    """Random training patches that each hold at least one labelled point.

    With sparse point labels (a few dozen points over a scene, as the map page's label
    mode or a reference sample gives) a patch drawn anywhere rarely holds a label: most
    batches would teach nothing. Here each patch is placed around a point drawn at
    random (every point equally likely), at a random offset, within its index entry.
    """

    def __init__(self, dataset: GeoDataset, size: int, length: int,
                 xs: Sequence[float], ys: Sequence[float],
                 generator: torch.Generator | None = None) -> None:
        """Index the points that lie inside the dataset's entries.

        Args:
            dataset: The training split's dataset.
            size: Patch side in pixels.
            length: Patches per epoch.
            xs: Point x coordinates in the dataset's CRS.
            ys: Point y coordinates in the dataset's CRS.
            generator: Random generator (default: torch's global one, seeded by
                ``seed_everything``).

        Raises:
            ValueError: If no point lies in an entry that holds a whole patch.
        """
        super().__init__(dataset)
        self.width, self.height = size * self.res[0], size * self.res[1]
        self.length = length
        self.generator = generator
        x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        self.entries: list[tuple[tuple[float, float, float, float], Any, NDArray[Any],
                                 NDArray[Any]]] = []
        for i in range(len(self.index)):
            geometry = self.index.geometry.iloc[i]
            minx, miny, maxx, maxy = geometry.bounds
            if maxx - minx < self.width or maxy - miny < self.height:
                continue
            inside = shapely.contains_xy(geometry, x, y)
            if inside.any():
                self.entries.append(((minx, miny, maxx, maxy), self.index.index[i],
                                     x[inside], y[inside]))
        if not self.entries:
            raise ValueError(f"none of the {len(x)} labelled points lies in a training "
                             f"area that holds a {size}-px patch")
        self.weights = torch.tensor([len(e[2]) for e in self.entries], dtype=torch.float)

    @property
    def points(self) -> int:
        """Labelled points the patches are placed around."""
        return int(self.weights.sum())

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        """Patches around random points, clamped to their entry."""
        res_x, res_y = self.res
        for _ in range(self.length):
            k = int(torch.multinomial(self.weights, 1, generator=self.generator))
            (minx, miny, maxx, maxy), interval, px, py = self.entries[k]
            j = int(torch.randint(len(px), (1,), generator=self.generator))
            u, v = torch.rand(2, generator=self.generator).tolist()
            low_x = max(minx, px[j] - self.width + res_x / 2)
            high_x = min(maxx - self.width, px[j] - res_x / 2)
            low_y = max(miny, py[j] - self.height + res_y / 2)
            high_y = min(maxy - self.height, py[j] - res_y / 2)
            x0 = low_x + u * max(0.0, high_x - low_x)
            y0 = low_y + v * max(0.0, high_y - low_y)
            yield (slice(x0, x0 + self.width), slice(y0, y0 + self.height),
                   slice(interval.left, interval.right))

    def __len__(self) -> int:
        """Patches per epoch."""
        return self.length
