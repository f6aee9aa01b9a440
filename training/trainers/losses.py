"""Losses the task offers beyond TorchGeo's: cross-entropy plus Dice.

Cross-entropy alone optimises pixel accuracy; on small, unbalanced real sets it lets a
majority class win the boundary pixels. Adding smp's multiclass Dice loss (computed over
the batch, nodata ignored) optimises overlap directly, which is what IoU and F1 score.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn


class CrossEntropyDiceLoss(nn.Module):
    """``ce_weight`` x cross-entropy + ``dice_weight`` x Dice, nodata ignored by both.

    ``weight`` is the cross-entropy's class-weight buffer (balanced weights are copied
    into it from the training split's class counts, as for plain cross-entropy).
    """

    def __init__(self, num_classes: int, ignore_index: int, ce_weight: float = 1.0,
                 dice_weight: float = 1.0) -> None:
        """Build both terms; class weights start at one."""
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=torch.ones(num_classes),
                                      ignore_index=ignore_index)
        self.dice = smp.losses.DiceLoss("multiclass", ignore_index=ignore_index,
                                        from_logits=True)
        self.ce_weight, self.dice_weight = ce_weight, dice_weight

    @property
    def weight(self) -> Tensor:
        """The cross-entropy's class weights (a buffer: copy into it in place)."""
        weight: Tensor = self.ce.weight  # type: ignore[assignment]
        return weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The weighted sum of both losses."""
        return (self.ce_weight * self.ce(logits, target)
                + self.dice_weight * self.dice(logits, target))
