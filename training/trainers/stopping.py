"""Early stopping that a signal raised before the minimum number of epochs cannot end.

Lightning's ``EarlyStopping`` ORs its decision into ``trainer.should_stop``, and the
trainer only postpones that flag until ``min_epochs``: a patience that ran out during
the minimum (a validation figure that dipped and then rose again) stays raised, and
the fit ends at ``min_epochs`` while the figure is still improving and a cosine
schedule has not annealed (the Amazon chips' cross-validation stopped a fold at epoch
30 of 40, best epoch 29). :class:`EarlyStoppingAfterMinimum` keeps tracking the best
figure and its patience from the first epoch, but its signal counts only from the
last epoch of the minimum on.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping


class EarlyStoppingAfterMinimum(EarlyStopping):
    """``EarlyStopping`` whose stop signal is dropped while ``min_epochs`` have not run."""

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        raised_before = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        minimum = trainer.fit_loop.min_epochs or 0
        if not raised_before and trainer.current_epoch + 1 < minimum:
            trainer.should_stop = False  # patience is judged again after the minimum
            self.stopped_epoch = 0
