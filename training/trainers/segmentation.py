"""The Lightning task: TorchGeo's segmentation task with per-class metrics and figures."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.loggers import MLFlowLogger
from rich.console import Console
from rich.table import Table
from torch import Tensor
from torchgeo.trainers import SemanticSegmentationTask
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from serving.classes import ClassSchema, load_classes
from training.trainers.figures import confusion_matrix_figure, overlay_figure
from training.trainers.losses import CrossEntropyDiceLoss
from training.trainers.windowed import tta_logits, windowed_probabilities

#: Metrics computed per class; each is also logged as a macro average over the
#: observed classes (nodata excluded), never micro-averaged alone.
PER_CLASS_METRICS = ("IoU", "F1", "precision", "recall")


class LandCoverSegmentationTask(SemanticSegmentationTask):
    """U-Net (or another smp model) land-cover segmentation.

    Extends TorchGeo's task with: the class schema and band names carried in the
    hyperparameters (so a checkpoint is self-describing), per-class IoU/F1/precision/
    recall with macro averages, confusion matrices and prediction overlays logged to
    MLflow, balanced class weights, and local-file weights only (nothing downloaded).
    """

    def __init__(
        self,
        model: Literal["unet", "deeplabv3+", "fcn", "upernet", "segformer"] = "unet",
        backbone: str = "resnet18",
        weights: str | None = None,
        in_channels: int = 10,
        num_classes: int = 6,
        class_schema: dict[str, Any] | None = None,
        band_names: list[str] | None = None,
        loss: Literal["ce", "jaccard", "focal", "ce+dice"] = "ce",
        class_weights: list[float] | Literal["balanced"] | None = None,
        lr: float = 1e-3,
        patience: int = 10,
        lr_schedule: Literal["plateau", "cosine"] = "plateau",
        warmup_epochs: float = 0.0,
        weight_decay: float = 0.01,
        freeze_backbone: bool = False,
        freeze_decoder: bool = False,
        overlay_samples: int = 4,
        eval_tile: int | None = None,
        eval_overlap: int = 32,
    ) -> None:
        """Build the model, loss and metrics.

        Args:
            model: smp architecture.
            backbone: Encoder name (timm/smp), e.g. ``resnet18``.
            weights: None (random init) or a local file: a cacaomap checkpoint to
                fine-tune from (every tensor of matching shape is loaded, so a new class
                schema gets a fresh head) or an encoder state dict.
            in_channels: Input bands (linked from the data).
            num_classes: Logit channels including nodata (linked from the data).
            class_schema: The class schema dict (linked from the data).
            band_names: Input band names (linked from the data).
            loss: Loss function (``ce+dice``: cross-entropy plus Dice, see
                :mod:`training.trainers.losses`).
            class_weights: Per-class loss weights, ``balanced`` (inverse square-root
                frequency on the training split) or None.
            lr: Learning rate (AdamW).
            patience: ReduceLROnPlateau patience in epochs (``plateau`` schedule).
            lr_schedule: ``plateau`` (TorchGeo's ReduceLROnPlateau on the monitored
                metric) or ``cosine`` (linear warm-up, then cosine decay to 1% of
                ``lr`` at the last step of ``max_epochs``, stepped per batch).
            warmup_epochs: Linear warm-up length of the ``cosine`` schedule, in epochs.
            weight_decay: AdamW weight decay.
            freeze_backbone: Train the decoder only.
            freeze_decoder: Train the encoder only.
            overlay_samples: Patches drawn in each overlay figure.
            eval_tile: Validation and test batches larger than this (whole chips, the
                data's ``eval_on: chips``) are classified as the service does: in
                windows of ``eval_tile`` px overlapping by ``eval_overlap``, their
                probabilities blended (:mod:`training.trainers.windowed`). None: the
                model sees each batch whole.
            eval_overlap: Overlap of those windows (the exported contract's).
        """
        if weights is not None and not os.path.isfile(weights):
            raise ValueError(
                f"weights must be a local file (nothing is downloaded): {weights!r}"
            )
        schema = ClassSchema.from_dict(class_schema) if class_schema else load_classes()
        if schema.num_classes != num_classes:
            raise ValueError(
                f"num_classes={num_classes} but the class schema has "
                f"{schema.num_classes} classes"
            )
        self.schema = schema
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if eval_tile is not None and not 0 <= eval_overlap < eval_tile:
            raise ValueError(f"eval_overlap must be in [0, eval_tile); got {eval_overlap} "
                             f"for eval_tile {eval_tile}")
        super().__init__(
            model=model, backbone=backbone, weights=None, in_channels=in_channels,
            num_classes=num_classes, ignore_index=schema.nodata, lr=lr,
            loss=loss,  # type: ignore[arg-type]  # ce+dice: built in configure_losses
            patience=patience, freeze_backbone=freeze_backbone,
            freeze_decoder=freeze_decoder,
        )
        self._overlay_batch: dict[str, Tensor] | None = None
        self.init_weights: str | None = None
        self.init_tensors_loaded = 0
        if weights is not None:
            self._load_local_weights(weights)

    # ------------------------------------------------------------ configure
    def _load_local_weights(self, path: str) -> None:
        from training.checkpoints import load_checkpoint_dict

        state = load_checkpoint_dict(path)
        if "state_dict" in state:  # a Lightning checkpoint of this task
            own = self.state_dict()
            loaded = {
                k: v for k, v in state["state_dict"].items()
                if k in own and own[k].shape == v.shape
            }
            self.load_state_dict(loaded, strict=False)
            self.init_tensors_loaded = len(loaded)
        else:  # a plain encoder state dict
            self.model.encoder.load_state_dict(state)
            self.init_tensors_loaded = len(state)
        self.init_weights = path

    @contextmanager
    def _torchgeo_hparams(self) -> Iterator[None]:
        """Lend TorchGeo's factories the hyperparameters this task fixes.

        They are removed afterwards so that checkpoints hold only this task's own
        arguments (LightningCLI feeds a checkpoint's hyperparameters back to __init__).
        """
        fixed = {"task": "multiclass", "num_labels": None, "num_filters": 3,
                 "ignore_index": self.schema.nodata}
        added = [k for k in fixed if k not in self.hparams]
        self.hparams.update({k: fixed[k] for k in added})
        weights = self.hparams.get("class_weights")
        if weights == "balanced":  # set from the data in on_fit_start
            self.hparams["class_weights"] = None
        try:
            yield
        finally:
            for k in added:
                del self.hparams[k]
            if weights == "balanced":
                self.hparams["class_weights"] = weights

    def configure_models(self) -> None:
        """Build the smp model with TorchGeo's factory."""
        with self._torchgeo_hparams():
            super().configure_models()

    def configure_losses(self) -> None:
        """TorchGeo's loss (or CE + Dice) ignoring nodata; balanced weights come later."""
        if self.hparams["loss"] == "ce+dice":
            self.criterion = CrossEntropyDiceLoss(self.hparams["num_classes"],
                                                  self.schema.nodata)
            weights = self.hparams["class_weights"]
            if isinstance(weights, list):
                self.criterion.weight.copy_(torch.tensor(weights))
            return
        with self._torchgeo_hparams():
            super().configure_losses()
        if self.hparams["class_weights"] == "balanced":
            # A weight buffer from the start, so checkpoints load before on_fit_start.
            self.criterion = torch.nn.CrossEntropyLoss(
                weight=torch.ones(self.hparams["num_classes"]),
                ignore_index=self.schema.nodata,
            )

    def configure_metrics(self) -> None:
        """Per-class metrics (average=None) per split, and confusion matrices."""
        kwargs: dict[str, Any] = {
            "num_classes": self.hparams["num_classes"],
            "ignore_index": self.schema.nodata,
        }
        metrics = MetricCollection(
            {
                "IoU": MulticlassJaccardIndex(average="none", **kwargs),
                "F1": MulticlassF1Score(average="none", **kwargs),
                "precision": MulticlassPrecision(average="none", **kwargs),
                "recall": MulticlassRecall(average="none", **kwargs),
            }
        )
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.train_confusion = MulticlassConfusionMatrix(**kwargs)
        self.val_confusion = MulticlassConfusionMatrix(**kwargs)
        self.test_confusion = MulticlassConfusionMatrix(**kwargs)

    def on_fit_start(self) -> None:
        """Set balanced class weights from the training split's class counts."""
        if self.hparams["class_weights"] != "balanced":
            return
        dm = self.trainer.datamodule  # type: ignore[attr-defined]
        dm.ensure_statistics()
        counts = dm.class_pixels.float().clamp_min(1)
        weights = (counts.sum() / counts).sqrt()
        weights[self.schema.nodata] = 0
        weights = weights / weights[weights > 0].mean()
        buffer: Tensor = self.criterion.weight  # type: ignore[assignment]
        with torch.no_grad():
            buffer.copy_(weights.to(buffer.device))

    def configure_optimizers(self) -> Any:
        """AdamW with the configured schedule (see ``lr_schedule``)."""
        if self.hparams["lr_schedule"] == "plateau":
            return super().configure_optimizers()
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"],
                                      weight_decay=self.hparams["weight_decay"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(self.hparams["warmup_epochs"] * total / epochs)

        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(warmup_cosine, warmup=warmup, total=total))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- steps
    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        x, y = batch["image"], batch["mask"]
        logits = self(x) if split == "train" else self.eval_logits(x)
        loss: Tensor = self.criterion(logits, y)
        if torch.isnan(loss):  # a batch made only of nodata
            loss = logits.sum() * 0
        self.log(f"{split}_loss", loss, batch_size=x.shape[0], prog_bar=split == "train")
        preds = logits.argmax(1)
        getattr(self, f"{split}_metrics").update(preds, y)
        getattr(self, f"{split}_confusion").update(preds, y)
        return loss

    def eval_logits(self, x: Tensor, tta: str = "none") -> Tensor:
        """Logits of a validation or test batch, as the service would classify it.

        Batches larger than ``eval_tile`` (whole chips) go through the service's
        blended windows; the log of the blended probabilities is returned (its softmax
        is those probabilities: same argmax, a loss on them). Otherwise the model's
        logits. ``tta``: each window's logits averaged over flips or the eight
        symmetries of the square, as the service's ``CACAOMAP_TTA`` does.
        """
        def logits_of(window: Tensor) -> Tensor:
            return tta_logits(self, window, tta)

        tile = self.hparams.get("eval_tile")
        if tile is not None and max(x.shape[-2:]) > tile:
            probs = windowed_probabilities(logits_of, x, tile, self.hparams["eval_overlap"])
            return probs.clamp_min(1e-12).log()
        return logits_of(x)

    def training_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Loss and per-class metrics on a training batch."""
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Loss and metrics; keeps the first batch for the overlay figure."""
        self._step(batch, "val")
        if batch_idx == 0:
            self._overlay_batch = {k: v.detach().cpu() for k, v in batch.items()}

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Loss and metrics on a test batch."""
        self._step(batch, "test")
        if batch_idx == 0:
            self._overlay_batch = {k: v.detach().cpu() for k, v in batch.items()}

    # ------------------------------------------------------------ epoch ends
    def _log_metrics(self, split: str) -> tuple[dict[str, dict[str, float]], Any]:
        """Log per-class metrics and their macro average over the classes present.

        A class with no reference pixels in the split gets NaN (nothing to measure)
        and stays out of the macro average, so absent classes neither inflate nor
        deflate it.

        Returns:
            The table {metric: {class or "macro": value}} and the confusion matrix.
        """
        collection = getattr(self, f"{split}_metrics")
        confusion_metric = getattr(self, f"{split}_confusion")
        values = collection.compute()
        confusion = confusion_metric.compute().cpu()
        collection.reset()
        confusion_metric.reset()
        support = confusion.sum(1)
        present = [c for c in self.schema.valid_codes if support[c] > 0]
        table: dict[str, dict[str, float]] = {}
        for name in PER_CLASS_METRICS:
            per_class = values[f"{split}_{name}"].float().cpu()
            row = {
                self.schema.classes[c].name: float(per_class[c]) if c in present
                else float("nan")
                for c in self.schema.valid_codes
            }
            row["macro"] = float(per_class[present].mean()) if present else float("nan")
            table[name] = row
            for cls, value in row.items():
                self.log(f"{split}_{name}_{cls}", value, prog_bar=(
                    split == "val" and name == "IoU" and cls == "macro"))
        return table, confusion.numpy()

    def on_train_epoch_end(self) -> None:
        """Log per-class training metrics."""
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Log per-class validation metrics, the confusion matrix and an overlay."""
        _, confusion = self._log_metrics("val")
        if not self.trainer.sanity_checking:
            self._log_figures("val", confusion, f"epoch_{self.current_epoch:03d}")

    def on_test_epoch_end(self) -> None:
        """Log per-class test metrics and figures, and print the per-class table."""
        table, confusion = self._log_metrics("test")
        self._log_figures("test", confusion, "final")
        self.test_table = table
        if self.trainer.is_global_zero:
            print_metrics_table(table, "Test metrics per class (held-out blocks)")

    def _log_figures(self, split: str, confusion: Any, tag: str) -> None:
        loggers = [lg for lg in self.loggers if isinstance(lg, MLFlowLogger)]
        if not loggers or not self.trainer.is_global_zero:
            return
        import matplotlib.pyplot as plt

        figures = {
            f"figures/{split}/confusion_{tag}.png": confusion_matrix_figure(
                confusion, self.schema, f"{split} confusion matrix ({tag})"
            )
        }
        batch = self._overlay_batch
        dm = getattr(self.trainer, "datamodule", None)
        if batch is not None and dm is not None and dm.mean is not None:
            n = min(self.hparams["overlay_samples"], batch["image"].shape[0])
            with torch.no_grad():
                preds = self(batch["image"][:n].to(self.device)).argmax(1).cpu()
            image = batch["image"][:n] * dm.std[None, :, None, None] + dm.mean[
                None, :, None, None]
            rgb = image[:, dm.rgb_indices].numpy()
            figures[f"figures/{split}/overlay_{tag}.png"] = overlay_figure(
                list(rgb), list(batch["mask"][:n].numpy()), list(preds.numpy()),
                self.schema, f"{split} patches ({tag})",
            )
        for logger in loggers:
            for path, fig in figures.items():
                logger.experiment.log_figure(logger.run_id, fig, path)
        for fig in figures.values():
            plt.close(fig)


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    done = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))


def print_metrics_table(table: dict[str, dict[str, float]], title: str) -> None:
    """Print per-class metrics as a rich table: classes as rows, metrics as columns."""
    metrics = list(table)
    rows = list(next(iter(table.values())))
    out = Table(title=title)
    out.add_column("class")
    for m in metrics:
        out.add_column(m, justify="right")
    for r in rows:
        out.add_row(r, *(f"{table[m][r]:.3f}" for m in metrics),
                    style="bold" if r == "macro" else None)
    Console().print(out)
