"""Blending overlapping windows into one class-probability map, a column group at a time.

Windows of ``tile`` pixels start every ``tile - overlap`` pixels (:func:`window_starts`),
the last one flush with the scene's edge. Each window's probabilities are weighted by
:func:`edge_weights` (0 within ``overlap // 4`` pixels of an edge it shares with a
neighbour, ramping to 1 over the next ``overlap // 4``), summed, and renormalised.

The scene's window columns are split into groups no wider than a block
(:func:`column_groups`). A :class:`GroupBlender` accumulates one group top to bottom in a
buffer one window tall; rows that no later window of the group reaches are emitted
(:class:`Emitted`), and what the group adds to the columns where the next group starts
is kept, for the whole scene height, in a :class:`Carry` that the next group adds back
before it emits. The blended map is therefore the same for any block width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``tile`` (last one flush)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def edge_weights(start: int, size: int, length: int, overlap: int) -> NDArray[np.float32]:
    """1-D blending weight of a window: 0 near inner edges, ramping to 1 inside."""
    margin = overlap // 4
    ramp = max(overlap // 4, 1)
    d = np.arange(size, dtype=np.float32)
    w = np.ones(size, np.float32)
    if start > 0:  # an inner edge on the low side
        w = np.minimum(w, np.clip((d - margin + 1) / ramp, 0, 1))
    if start + size < length:  # an inner edge on the high side
        w = np.minimum(w, np.clip((size - 1 - d - margin + 1) / ramp, 0, 1))
    return w


def column_groups(col_starts: list[int], tile: int, block_px: int) -> list[list[int]]:
    """Window columns grouped so that each group spans at most ``block_px`` pixels.

    A group always holds at least one window, so ``block_px`` below the tile size
    means one window column per group.
    """
    groups: list[list[int]] = [[col_starts[0]]]
    for c in col_starts[1:]:
        if c + tile - groups[-1][0] > block_px:
            groups.append([])
        groups[-1].append(c)
    return groups


@dataclass
class Carry:
    """What one column group adds to the columns where the next group starts.

    Attributes:
        acc: (classes, scene height, columns) weighted probabilities.
        wsum: (scene height, columns) weights.
        valid: (scene height, columns) observed pixels.
    """

    acc: NDArray[np.float32]
    wsum: NDArray[np.float32]
    valid: NDArray[np.bool_]

    @classmethod
    def zeros(cls, classes: int, height: int, width: int) -> Carry:
        """An empty carry."""
        return cls(np.zeros((classes, height, width), np.float32),
                   np.zeros((height, width), np.float32), np.zeros((height, width), bool))


@dataclass
class Emitted:
    """Blended rows ready to become class codes.

    Attributes:
        probs: (classes, rows, columns) renormalised probabilities.
        valid: (rows, columns) pixels observed in every band.
        row: Scene row of the block's first row.
        col: Scene column of the block's first column.
    """

    probs: NDArray[np.floating]
    valid: NDArray[np.bool_]
    row: int
    col: int


class GroupBlender:
    """Accumulate one column group's windows and emit finished rows.

    Args:
        group: Window start columns of the group (scene coordinates).
        tile_w: Window width.
        tile_h: Window height.
        scene_w: Scene width.
        scene_h: Scene height.
        overlap: Overlap between neighbouring windows.
        classes: Number of classes.
        owned: Columns from the group's first window that this group emits; the rest
            are handed on to the next group in :attr:`carry_out`.
        carry_in: What the previous group added to this group's first columns.
        last: Whether this is the scene's last group (nothing is carried on).
    """

    def __init__(self, group: list[int], tile_w: int, tile_h: int, scene_w: int,
                 scene_h: int, overlap: int, classes: int, owned: int,
                 carry_in: Carry | None, last: bool) -> None:
        self.x0 = group[0]
        self.width = group[-1] + tile_w - self.x0
        self.tile_w, self.tile_h, self.scene_h = tile_w, tile_h, scene_h
        self.overlap, self.owned = overlap, owned
        self.carry_in = carry_in
        self.carry_out = None if last else Carry.zeros(classes, scene_h, self.width - owned)
        self.wx = {c: edge_weights(c, tile_w, scene_w, overlap) for c in group}
        self.acc = np.zeros((classes, tile_h, self.width), np.float32)
        self.wsum = np.zeros((tile_h, self.width), np.float32)
        self.valid = np.zeros((tile_h, self.width), bool)
        self.start = 0  # scene row of the buffer's first row

    def observe(self, valid: NDArray[np.bool_]) -> None:
        """Mark observed pixels of the strip now at the top of the buffer."""
        self.valid |= valid

    def add(self, row: int, cols: list[int], probs: NDArray[np.float32]) -> None:
        """Add windows starting at scene ``row`` and columns ``cols``."""
        wy = edge_weights(row, self.tile_h, self.scene_h, self.overlap)[:, None]
        top = row - self.start
        for i, c in enumerate(cols):
            w = wy * self.wx[c][None, :]
            x = c - self.x0
            self.acc[:, top : top + self.tile_h, x : x + self.tile_w] += probs[i] * w
            self.wsum[top : top + self.tile_h, x : x + self.tile_w] += w

    def emit_until(self, row: int) -> Emitted | None:
        """Emit the buffered rows above scene ``row`` (no later window reaches them)."""
        rows = row - self.start
        if rows <= 0:
            return None
        r = slice(self.start, row)
        if self.carry_in is not None:  # the previous group's share of these columns
            k = self.carry_in.acc.shape[2]
            self.acc[:, :rows, :k] += self.carry_in.acc[:, r]
            self.wsum[:rows, :k] += self.carry_in.wsum[r]
            self.valid[:rows, :k] |= self.carry_in.valid[r]
        own = self.owned
        if self.carry_out is not None:
            self.carry_out.acc[:, r] = self.acc[:, :rows, own:]
            self.carry_out.wsum[r] = self.wsum[:rows, own:]
            self.carry_out.valid[r] = self.valid[:rows, own:]
        block = Emitted(
            probs=self.acc[:, :rows, :own] / np.maximum(self.wsum[:rows, :own], np.float32(1e-12)),
            valid=self.valid[:rows, :own].copy(), row=self.start, col=self.x0)
        self.acc = np.roll(self.acc, -rows, axis=1)
        self.acc[:, -rows:] = 0
        self.wsum = np.roll(self.wsum, -rows, axis=0)
        self.wsum[-rows:] = 0
        self.valid = np.roll(self.valid, -rows, axis=0)
        self.valid[-rows:] = False
        self.start = row
        return block
