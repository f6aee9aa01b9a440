"""Test-time augmentation: logits averaged over flips and 90° rotations of the input.

A land-cover map has no preferred orientation, so a model's answer on a tile turned
or mirrored should be the same map turned or mirrored. Running the model on each
transform of the input, undoing the transform on its logits and averaging them
(the normalised geometric mean of the class probabilities) removes what the model's
answer owes to the orientation. Modes:

- ``none``: the input as it is (one run).
- ``flips``: the identity, the horizontal flip, the vertical flip and both (4 runs).
- ``d4``: the eight symmetries of the square: four rotations, each also mirrored
  (8 runs); on a non-square input, rotations by 90° transpose it (the graph is fully
  convolutional and the padded sides are multiples of its stride).

The transforms act on the last two axes of any array with the numpy array API (numpy
here; :mod:`training.trainers.windowed` gives torch tensors the same transforms), so
the service, scenes, ``cacaomap model evaluate`` and the trainer's validation average the
same eight views.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar, get_args

import numpy as np
from numpy.typing import NDArray

#: Test-time augmentation modes.
TTA = Literal["none", "flips", "d4"]
#: Model runs per tile of each mode.
RUNS = {"none": 1, "flips": 4, "d4": 8}

#: A transform: (rotations by 90° counter-clockwise, mirrored left-right first).
Transform = tuple[int, bool]

A = TypeVar("A")


def transforms(mode: str) -> list[Transform]:
    """The transforms of a mode, the identity first.

    Raises:
        ValueError: For an unknown mode, naming the known ones.
    """
    if mode not in get_args(TTA):
        raise ValueError(f"unknown test-time augmentation {mode!r}; use "
                         f"{', '.join(get_args(TTA))}")
    if mode == "none":
        return [(0, False)]
    if mode == "flips":  # a vertical flip is a mirror turned twice; both flips: 180°
        return [(0, False), (0, True), (2, True), (2, False)]
    return [(k, mirror) for mirror in (False, True) for k in range(4)]


def apply(x: A, transform: Transform, rot90: Callable[..., A], flip: Callable[..., A]
          ) -> A:
    """``x`` mirrored (last axis) if asked, then turned ``k`` times by 90°."""
    k, mirror = transform
    if mirror:
        x = flip(x)
    return rot90(x, k) if k else x


def undo(y: A, transform: Transform, rot90: Callable[..., A], flip: Callable[..., A]
         ) -> A:
    """The inverse of :func:`apply`: turned back, then mirrored back."""
    k, mirror = transform
    if k:
        y = rot90(y, -k)
    return flip(y) if mirror else y


def _rot90(x: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    return np.rot90(x, k, axes=(-2, -1))


def _flip(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return x[..., ::-1]


def averaged_logits(run: Callable[[NDArray[np.float32]], NDArray[np.float32]],
                    x: NDArray[np.float32], mode: str) -> NDArray[np.float32]:
    """Mean logits of ``run`` over the mode's transforms of ``x`` (N, C, H, W).

    One transform runs at a time, so memory is that of the untransformed run plus
    the running sum.
    """
    chosen = transforms(mode)
    if len(chosen) == 1:
        return run(x)
    total: NDArray[np.float32] | None = None
    for transform in chosen:
        view = np.ascontiguousarray(apply(x, transform, _rot90, _flip))
        back = undo(run(view), transform, _rot90, _flip)
        if total is None:
            total = np.array(back, np.float32)
        else:
            total += back
    assert total is not None
    total /= np.float32(len(chosen))
    return total
