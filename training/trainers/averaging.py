"""Averaged weights (EMA) that the test and the export both use.

Lightning's ``EMAWeightAveraging`` validates with the averaged weights and saves them
as the checkpoint's ``state_dict`` (what ``cacaomap model export`` and ``cacaomap model evaluate``
read), but when the trainer tests the best checkpoint right after fitting, its
``on_load_checkpoint`` puts the *current* (not averaged) weights back into the model:
the trainer's test table would then describe other weights than the model exported.
:class:`EMAWeights` keeps the averaged weights whenever the checkpoint is loaded to be
tested, validated or used for prediction.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeights(EMAWeightAveraging):
    """``EMAWeightAveraging`` whose tests use the averaged weights (see the module)."""

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Restore the averaging state; outside fitting, keep the averaged weights."""
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        if trainer.state.fn != TrainerFn.FITTING and "current_model_state" in checkpoint:
            pl_module.load_state_dict(checkpoint["state_dict"])
