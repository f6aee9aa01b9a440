"""Whole chips as validation and test samples: the same pixels every epoch, all of them.

torchgeo's ``GridGeoSampler`` compares a chip's extent with the window size in CRS
units and drops a chip whose extent falls short by a rounding error (a 512-px chip in
EPSG:4326 is rarely exactly 512 pixels wide in floating point), and cuts a larger chip
into windows. :class:`WholeChipSampler` yields one square window of ``side`` pixels per
chip, anchored at its upper-left corner: with chips of one size (the small-data case),
every chip whole, once, in index order.
"""

from __future__ import annotations

from collections.abc import Iterator

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
