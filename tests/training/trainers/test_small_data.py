"""The small-data recipe's parts.

Served windows, whole-chip validation, a schedule that finishes, patches sized from
the chips.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from tests.training.conftest import CHIP
from training.data.datamodule import LandCoverDataModule
from training.trainers.segmentation import LandCoverSegmentationTask
from training.trainers.windowed import windowed_probabilities


class _Local(torch.nn.Module):
    """Two 3x3 convolutions: a receptive-field radius of 2 pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_windows_blend_to_the_whole_chip_for_a_local_model() -> None:
    model = _Local().eval()
    x = torch.randn(2, 3, 80, 72)
    with torch.no_grad():
        whole = torch.softmax(model(x), 1)
        blended = windowed_probabilities(model, x, tile=32, overlap=16)  # margin 4 >= 2
        one_window = windowed_probabilities(model, x[..., :32, :32], tile=32, overlap=16)
    torch.testing.assert_close(blended, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(blended.sum(1), torch.ones(2, 80, 72))
    torch.testing.assert_close(one_window, torch.softmax(model(x[..., :32, :32]), 1))
    with pytest.raises(ValueError, match="overlap must be in"):
        windowed_probabilities(model, x, tile=32, overlap=32)


def _data(chips: Path, **overrides: object) -> LandCoverDataModule:
    kwargs: dict[str, object] = dict(
        images=str(chips / "images"), labels=str(chips / "labels"),
        classes=str(chips / "classes.yaml"), label_map={1: 1, 4: 2},
        all_bands=["R", "G", "B"], rgb_bands=["R", "G", "B"], image_nodata=None,
        image_glob="*.tif", label_glob="*.tif", filename_regex=r"^(?P<chip>.+)\.tif$",
        reflectance_scale=255, split_by="file", split_fractions=(0.5, 0.25, 0.25),
        batch_size=2, patch_size=32, length=8, eval_on="chips")
    kwargs.update(overrides)
    return LandCoverDataModule(**kwargs)  # type: ignore[arg-type]


def _task(data: LandCoverDataModule, **overrides: object) -> LandCoverSegmentationTask:
    kwargs: dict[str, object] = dict(
        in_channels=3, num_classes=3, class_schema=data.schema.to_dict(),
        band_names=["R", "G", "B"], eval_tile=64, eval_overlap=16, overlay_samples=1)
    kwargs.update(overrides)
    return LandCoverSegmentationTask(**kwargs)  # type: ignore[arg-type]


def _trainer(tmp_path: Path, **kwargs: object) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, default_root_dir=tmp_path,
                      enable_model_summary=False, **kwargs)  # type: ignore[arg-type]


def test_whole_chip_validation_gives_the_same_figure_twice(chips: Path, tmp_path: Path
                                                           ) -> None:
    data = _data(chips)
    task = _task(data)
    first = _trainer(tmp_path).validate(task, datamodule=data, verbose=False)[0]
    second = _trainer(tmp_path).validate(task, datamodule=data, verbose=False)[0]
    assert first["val_IoU_macro"] == second["val_IoU_macro"]
    assert first == second
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape[-2:] == (CHIP, CHIP)  # whole chips, not patches


def test_early_stopping_cannot_stop_before_the_minimum(chips: Path, tmp_path: Path) -> None:
    data = _data(chips)
    from training.trainers.stopping import EarlyStoppingAfterMinimum

    # The recipe's rule, wanting to stop after the first epoch: any figure passes the
    # threshold; it stops as soon as the minimum has run.
    eager = EarlyStoppingAfterMinimum(monitor="val_IoU_macro", mode="max", patience=0,
                                      stopping_threshold=-1.0)
    trainer = _trainer(tmp_path, min_epochs=3, max_epochs=6, callbacks=[eager],
                       limit_train_batches=1)
    trainer.fit(_task(data, lr_schedule="cosine"), datamodule=data)
    assert trainer.current_epoch == 3  # three epochs ran, then the rule could stop it


class _Figures(pl.Callback):
    """Sets the monitored figure of each epoch (before early stopping reads it)."""

    def __init__(self, figures: list[float]) -> None:
        self.figures = figures

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics["figure"] = torch.tensor(self.figures[trainer.current_epoch])


@pytest.mark.parametrize(("rule", "epochs"), [(EarlyStopping, 4), ("after_minimum", 6)])
def test_a_patience_spent_during_the_minimum_does_not_stop_a_rising_figure(
        chips: Path, tmp_path: Path, rule: object, epochs: int) -> None:
    from training.trainers.stopping import EarlyStoppingAfterMinimum

    data = _data(chips)
    kind = EarlyStoppingAfterMinimum if rule == "after_minimum" else EarlyStopping
    stopper = kind(monitor="figure", mode="max", patience=1)  # type: ignore[operator]
    # A dip in epochs 1-2 spends the patience; from epoch 3 the figure rises again.
    figures = _Figures([0.5, 0.4, 0.3, 0.6, 0.7, 0.8])
    trainer = _trainer(tmp_path, min_epochs=4, max_epochs=6, limit_train_batches=1,
                       callbacks=[figures, stopper])
    trainer.fit(_task(data, lr_schedule="cosine"), datamodule=data)
    # Lightning's rule ends the fit at the minimum (4) although the figure rises; ours
    # runs the schedule out.
    assert trainer.current_epoch == epochs


def test_patches_and_their_number_are_sized_from_the_chips(
        chips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data(chips, patch_size="auto", length="auto")
    data.setup("fit")
    # The chips' side, a multiple of 32 that fits: 96-px chips in EPSG:4326 measure
    # 95.99999 px, and torchgeo's samplers would not draw a 96-px patch from them.
    assert data.patch_size == 64
    # 4 chips cover once, 16 batches of 2 are 32 patches: the 2**22-pixel floor rules.
    assert data.length == math.ceil(2**22 / 64**2) == 1024
    assert "patches: 64 px from 4 training chips of 95 px" in capsys.readouterr().err
    data.compute_statistics()  # the patch fits: there are patches to compute them on
    from training.data.patch_sizing import auto_length

    assert auto_length(24, 4, 256, 8) == 128  # 512-px chips: 16 batches of 8 rule
    assert auto_length(30, 1, 128, 8) == 256  # 128-px chips: the pixel floor
    assert auto_length(100, 4, 256, 8) == 400  # many chips: each covered once


def test_the_test_after_fitting_uses_the_averaged_weights(chips: Path, tmp_path: Path
                                                          ) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from training.trainers.averaging import EMAWeights

    data = _data(chips)
    task = _task(data, lr=0.05)
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_IoU_macro", mode="max")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, max_epochs=2, limit_train_batches=2,
                         callbacks=[best, EMAWeights(decay=0.5)], default_root_dir=tmp_path)
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data, ckpt_path="best", verbose=False)
    saved = torch.load(best.best_model_path, map_location="cpu", weights_only=False)
    key = next(k for k in saved["state_dict"] if k.endswith("weight"))
    assert not torch.equal(saved["state_dict"][key], saved["current_model_state"][key])
    assert torch.equal(task.state_dict()[key], saved["state_dict"][key])  # averaged
