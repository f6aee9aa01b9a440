"""Class probabilities of whole chips through the windows the service classifies them in.

The service classifies a scene in windows of the contract's tile size overlapping by
``overlap`` pixels and blends their probabilities with the weights of
:func:`serving.inference.blending.edge_weights` (zero within ``overlap/4`` of an inner
edge, ramping to one). :func:`windowed_probabilities` does the same on a batch of whole
chips in memory, so that validation and test figures are those of the path that
serves, on the same pixels every epoch, rather than of patches cut without context.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from serving.inference.blending import edge_weights, window_starts
from serving.inference.tta import apply, transforms, undo


def _rot90(x: Tensor, k: int) -> Tensor:
    return torch.rot90(x, k, dims=(-2, -1))


def _flip(x: Tensor) -> Tensor:
    return torch.flip(x, dims=(-1,))


def tta_logits(logits_of: Callable[[Tensor], Tensor], x: Tensor, mode: str) -> Tensor:
    """Mean logits over the test-time augmentation's transforms of ``x``.

    The same transforms as the service's (:mod:`serving.inference.tta`), on tensors.
    """
    chosen = transforms(mode)
    if len(chosen) == 1:
        return logits_of(x)
    total = torch.zeros(())
    for transform in chosen:
        total = total + undo(logits_of(apply(x, transform, _rot90, _flip)), transform,
                             _rot90, _flip)
    return total / len(chosen)


def windowed_probabilities(logits_of: Callable[[Tensor], Tensor], x: Tensor, tile: int,
                           overlap: int) -> Tensor:
    """Softmax probabilities (N, classes, H, W) of ``x`` (N, bands, H, W), blended.

    Args:
        logits_of: The model: (n, bands, tile, tile) -> (n, classes, tile, tile).
        x: Whole chips.
        tile: Window side (the contract's tile size); a chip no larger is one window.
        overlap: Overlap of neighbouring windows (the contract's).

    Returns:
        The blended probabilities; each pixel's weights sum to one.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got {overlap} for tile {tile}")
    n, _, height, width = x.shape
    if height <= tile and width <= tile:
        return torch.softmax(logits_of(x), dim=1)
    stride = tile - overlap
    rows = window_starts(height, tile, stride)
    cols = window_starts(width, tile, stride)
    total: Tensor | None = None
    weight = torch.zeros((height, width), dtype=x.dtype, device=x.device)
    for r in rows:
        h = min(tile, height - r)
        wy = torch.from_numpy(edge_weights(r, h, height, overlap)).to(x)
        for c in cols:
            w = min(tile, width - c)
            wx = torch.from_numpy(edge_weights(c, w, width, overlap)).to(x)
            probs = torch.softmax(logits_of(x[:, :, r:r + h, c:c + w]), dim=1)
            if total is None:
                total = torch.zeros((n, probs.shape[1], height, width), dtype=probs.dtype,
                                    device=x.device)
            plane = wy[:, None] * wx[None, :]
            total[:, :, r:r + h, c:c + w] += probs * plane
            weight[r:r + h, c:c + w] += plane
    assert total is not None
    if not bool((weight > 0).all()):
        raise ValueError(f"windows of {tile} px overlapping by {overlap} leave pixels "
                         "without weight")
    return total / weight

