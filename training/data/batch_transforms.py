"""What happens to each batch on the device: nodata masked, jitter, holes, normalisation.

:class:`BatchTransforms` is the part of
:class:`~training.data.datamodule.LandCoverDataModule` that runs per batch: pixels
without an observation leave the loss and take the band means, training patches get
the brightness/contrast jitter and the cloud-like holes of the recipe, and kornia
normalises (and, in training, flips and rotates) them.
"""

from __future__ import annotations

from typing import Any

import kornia.augmentation as K
import torch
from torch import Tensor

from serving.classes import ClassSchema
from serving.inference.validity import observed, observed_by_sensor, sensor_groups


class BatchTransforms:
    """Per-batch transforms of the data module (a mixin: it reads the module's state)."""

    hparams: Any
    mean: Tensor | None
    std: Tensor | None
    schema: ClassSchema
    aug: Any
    train_aug: Any
    bands: list[str]

    def _valid_pixels(self, image: Tensor) -> Tensor:
        """Boolean (…, H, W): observed pixels (:func:`serving.inference.validity.observed`)."""
        return observed(image, self.hparams["image_nodata"])

    def _build_augmentations(self) -> None:
        assert self.mean is not None and self.std is not None
        normalize = K.Normalize(mean=self.mean, std=self.std)
        self.aug = K.AugmentationSequential(normalize, data_keys=None, keepdim=True)
        if self.hparams["augment"]:
            self.train_aug = K.AugmentationSequential(
                normalize,
                K.RandomHorizontalFlip(),
                K.RandomVerticalFlip(),
                K.RandomRotation90(times=(0, 3)),
                data_keys=None,
                keepdim=True,
            )

    # --------------------------------------------------------------- batches
    def on_after_batch_transfer(
        self, batch: dict[str, Tensor], dataloader_idx: int
    ) -> dict[str, Tensor]:
        """Mask nodata pixels out of the loss, fill them with the mean, normalise."""
        assert self.mean is not None
        image = batch["image"]
        trainer = getattr(self, "trainer", None)
        training = trainer is not None and trainer.training
        fill = self.mean.to(image.device)[None, :, None, None].expand_as(image)
        groups = sensor_groups(self.bands)
        if len(groups) == 1:
            valid = self._valid_pixels(image)
            if training:
                image = self._jitter(image, valid)
                valid = valid & ~self._holes(valid)
            image = torch.where(valid[:, None], image, fill)
        else:
            # Optical and radar stacked: clouds (the holes) hide optical bands only, and
            # jitter is a reflectance change: the model learns to classify from radar
            # where no clear optical observation is left. A pixel is unobserved (out of
            # the loss) only where neither sensor saw it.
            optical = groups[0]
            seen = observed_by_sensor(image, self.hparams["image_nodata"], groups)
            if training:
                image = image.clone()
                image[:, optical] = self._jitter(image[:, optical], seen[0])
                seen[0] = seen[0] & ~self._holes(seen[0])
            valid = seen[0] | seen[1]
            image = image.clone()
            for group, group_seen in zip(groups, seen, strict=True):
                image[:, group] = torch.where(group_seen[:, None], image[:, group],
                                              fill[:, group])
        batch["image"] = image
        if "mask" in batch:
            batch["mask"] = torch.where(
                valid, batch["mask"], torch.full_like(batch["mask"], self.schema.nodata)
            )
        return super().on_after_batch_transfer(batch, dataloader_idx)  # type: ignore[misc, no-any-return]

    def _holes(self, valid: Tensor) -> Tensor:
        """(N, H, W) True inside one random rectangle of a ``holes`` share of patches."""
        share = float(self.hparams["holes"])
        n, height, width = valid.shape
        if not share:
            return torch.zeros_like(valid)
        device = valid.device
        side = torch.rand((n, 2), device=device) * 0.35 + 0.15
        h = (side[:, 0] * height).long().clamp_min(1)
        w = (side[:, 1] * width).long().clamp_min(1)
        r0 = (torch.rand(n, device=device) * (height - h + 1)).long()
        c0 = (torch.rand(n, device=device) * (width - w + 1)).long()
        rows = torch.arange(height, device=device)[None, :, None]
        cols = torch.arange(width, device=device)[None, None, :]
        inside = ((rows >= r0[:, None, None]) & (rows < (r0 + h)[:, None, None])
                  & (cols >= c0[:, None, None]) & (cols < (c0 + w)[:, None, None]))
        chosen = torch.rand(n, device=device) < share
        return inside & chosen[:, None, None]

    def _jitter(self, image: Tensor, valid: Tensor) -> Tensor:
        """Per-patch gain and offset on observed pixels, within physical reflectance."""
        brightness, contrast = self.hparams["brightness"], self.hparams["contrast"]
        if not brightness and not contrast:
            return image
        scale = float(self.hparams["reflectance_scale"])
        n = image.shape[0]
        shape = (n, 1, 1, 1)
        gain = 1 + (torch.rand(shape, device=image.device) * 2 - 1) * contrast
        offset = (torch.rand(shape, device=image.device) * 2 - 1) * brightness * scale
        jittered = (image * gain + offset).clamp_min(0)
        return torch.where(valid[:, None], jittered, image)
