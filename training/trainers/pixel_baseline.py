"""A per-pixel spectral baseline the segmentation model has to beat.

A scikit-learn random forest trained on single pixels of the training blocks and scored
on the held-out test blocks, with the same macro-F1 as the model. It runs as a callback
after testing so that both figures land in the same MLflow run, side by side.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from rich.console import Console
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import GridGeoSampler


def _pixels(
    datamodule: pl.LightningDataModule, dataset: GeoDataset, max_pixels: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Valid labelled pixels (features, labels) of a split, subsampled to a maximum."""
    size = datamodule.patch_size  # type: ignore[attr-defined]
    nodata = datamodule.schema.nodata  # type: ignore[attr-defined]
    xs, ys = [], []
    for query in GridGeoSampler(dataset, size, size):
        sample = dataset[query]
        image = sample["image"]
        valid = datamodule._valid_pixels(image)  # type: ignore[attr-defined]
        keep = valid & (sample["mask"] != nodata)
        xs.append(image[:, keep].T.numpy())
        ys.append(sample["mask"][keep].numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(y), max_pixels, replace=False)
        x, y = x[pick], y[pick]
    return x, y


class PixelRandomForestBaseline(pl.Callback):
    """After testing, fit a per-pixel random forest and log its test macro-F1."""

    def __init__(
        self, n_estimators: int = 100, max_train_pixels: int = 200_000, seed: int = 0
    ) -> None:
        """Configure the forest.

        Args:
            n_estimators: Trees in the forest.
            max_train_pixels: Training pixels drawn at random from the train blocks.
            seed: Seed of the draw and the forest.
        """
        self.n_estimators = n_estimators
        self.max_train_pixels = max_train_pixels
        self.seed = seed
        self.result: dict[str, float] = {}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fit on train pixels, score on test pixels, log and print the comparison."""
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule  # type: ignore[attr-defined]
        x_train, y_train = _pixels(dm, dm.train_dataset, self.max_train_pixels, self.seed)
        x_test, y_test = _pixels(dm, dm.test_dataset, 10**12, self.seed)
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators, n_jobs=-1, random_state=self.seed
        )
        forest.fit(x_train, y_train)
        predicted = forest.predict(x_test)
        labels = dm.schema.valid_codes
        per_class = f1_score(y_test, predicted, labels=labels, average=None,
                             zero_division=0)
        macro = float(np.mean(per_class))
        self.result = {"test_pixel_rf_F1_macro": macro}
        for code, value in zip(labels, per_class, strict=True):
            self.result[f"test_pixel_rf_F1_{dm.schema.classes[code].name}"] = float(value)
        model_f1 = getattr(pl_module, "test_table", {}).get("F1", {}).get("macro")
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                logger.log_metrics(self.result)
        Console().print(
            f"Per-pixel random forest baseline: test macro-F1 {macro:.3f}"
            + (f"  |  segmentation model: {model_f1:.3f}" if model_f1 is not None else "")
        )
