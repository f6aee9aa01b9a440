"""Deterministic coordinate-hashed noise for the synthetic landscape.

Every field is a pure function of (row, col, seed), so a scene can be generated strip by
strip (bounded memory at 10980 px) and still be identical to one generated whole.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float32]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def hash_uniform(
    iy: NDArray[np.int64], ix: NDArray[np.int64], seed: int
) -> NDArray[np.float64]:
    """Uniform [0, 1) numbers hashed from integer lattice coordinates (splitmix64).

    Args:
        iy: Row lattice coordinates.
        ix: Column lattice coordinates (broadcast against ``iy``).
        seed: Stream seed; different seeds give independent fields.

    Returns:
        An array of the broadcast shape of ``iy`` and ``ix``.
    """
    with np.errstate(over="ignore"):
        z = (
            iy.astype(np.uint64) * np.uint64(0x1F1F1F1F)
            + ix.astype(np.uint64) * _M1
            + np.uint64(seed & 0xFFFFFFFF) * _M3
        )
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(
    rows: NDArray[np.int64], cols: NDArray[np.int64], scale: float, seed: int
) -> Float:
    """Smooth value noise in [0, 1] with features about ``scale`` pixels across.

    Args:
        rows: Row coordinates, shape (H, 1) or (H, W).
        cols: Column coordinates, shape (1, W) or (H, W).
        scale: Lattice spacing in pixels.
        seed: Stream seed.

    Returns:
        A float32 array of the broadcast shape.
    """
    y = rows / scale
    x = cols / scale
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy = y - y0
    fx = x - x0
    sy = fy * fy * (3 - 2 * fy)
    sx = fx * fx * (3 - 2 * fx)
    v00 = hash_uniform(y0, x0, seed)
    v01 = hash_uniform(y0, x0 + 1, seed)
    v10 = hash_uniform(y0 + 1, x0, seed)
    v11 = hash_uniform(y0 + 1, x0 + 1, seed)
    top = v00 + (v01 - v00) * sx
    bottom = v10 + (v11 - v10) * sx
    return (top + (bottom - top) * sy).astype(np.float32)


def fractal_noise(
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    scale: float,
    seed: int,
    octaves: int = 3,
) -> Float:
    """Sum of value-noise octaves (halving scale, halving amplitude), in [0, 1]."""
    total = np.zeros(np.broadcast_shapes(rows.shape, cols.shape), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * value_noise(rows, cols, scale / 2**octave, seed + octave)
        norm += amplitude
        amplitude /= 2
    return total / norm


def gaussian_noise(
    rows: NDArray[np.int64], cols: NDArray[np.int64], seed: int
) -> Float:
    """Per-pixel standard normal noise (Box-Muller on two hashed uniforms)."""
    u1 = hash_uniform(rows, cols, seed)
    u2 = hash_uniform(rows, cols, seed + 7919)
    radius = np.sqrt(-2.0 * np.log1p(-u1))
    return (radius * np.cos(2.0 * np.pi * u2)).astype(np.float32)
