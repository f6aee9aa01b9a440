"""How big and how many training patches ``patch_size: auto`` and ``length: auto`` take."""

from __future__ import annotations

import math

from torchgeo.datasets import GeoDataset

#: Largest patch side ``patch_size: auto`` takes (context enough; a 2-core CPU).
MAX_AUTO_PATCH = 256
#: Fewest batches an epoch of ``length: auto`` has.
MIN_AUTO_BATCHES = 16
#: Fewest training pixels an epoch of ``length: auto`` holds (2**22: 64 patches of
#: 256 px, 256 of 128 px): small patches must not mean an epoch of little training.
MIN_AUTO_PIXELS = 2**22


def auto_length(chips: int, per_chip: int, patch: int, batch_size: int) -> int:
    """Patches an epoch of ``length: auto`` draws.

    Enough to cover the training chips once, and at least :data:`MIN_AUTO_BATCHES`
    batches and :data:`MIN_AUTO_PIXELS` pixels.
    """
    return max(chips * per_chip, MIN_AUTO_BATCHES * batch_size,
               math.ceil(MIN_AUTO_PIXELS / patch**2))


def chip_sides(dataset: GeoDataset, whole: bool = True) -> list[int]:
    """The side in dataset pixels of each file of ``dataset``.

    Args:
        dataset: A split's dataset.
        whole: The shorter side, in whole pixels (a patch that fits: torchgeo's
            samplers compare strictly, so a chip of 511.99999 px takes no 512-px
            patch); else the longer side, rounded up (a window that holds the chip).
    """
    res = dataset.res
    sides = []
    for bounds in dataset.index.geometry.bounds.itertuples(index=False):
        width = (bounds.maxx - bounds.minx) / res[0]
        height = (bounds.maxy - bounds.miny) / res[1]
        if whole:
            sides.append(math.floor(min(width, height)))
        else:
            sides.append(math.ceil(max(width, height) - 1e-6))
    if not sides:
        raise ValueError("a split without chips")
    return sides
