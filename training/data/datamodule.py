"""The Lightning data module: imagery & labels, blocked split, statistics, augmentation."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import rasterio
import torch
from pyproj import CRS
from rich.console import Console
from rich.progress import track
from torch import Tensor
from torchgeo.datamodules import GeoDataModule
from torchgeo.datasets import GeoDataset, IntersectionDataset, UnionDataset
from torchgeo.samplers import GeoSampler, GridGeoSampler, RandomGeoSampler

from serving.areas import ground_pixel_size
from serving.bands import DEFAULT_BANDS
from serving.classes import ClassSchema, load_classes
from serving.inference.validity import observed_by_sensor, sensor_groups
from training.data.batch_transforms import BatchTransforms
from training.data.datasets import (
    DATED_FILENAME_REGEX,
    LandCoverRaster,
    LandCoverVectors,
    MultispectralImagery,
)
from training.data.patch_sizing import MAX_AUTO_PATCH, auto_length, chip_sides
from training.data.point_labels import labelled_points, overlay_masks
from training.data.samplers import LabelledPatchSampler, WholeChipSampler
from training.data.splits import (
    BlockAssignment,
    assign_blocks,
    assign_files,
    block_size_in_crs_units,
    read_split_file,
    split_by_blocks,
)
from training.tracking import dataset_fingerprint

CONSOLE = Console(stderr=True)


@contextmanager
def _step(what: str) -> Iterator[Callable[[str], None]]:
    """Time a setup step and print what it did (``said(...)``) and how long it took."""
    start = time.perf_counter()
    detail: list[str] = []
    yield detail.append
    CONSOLE.print(f"[bold]{what}[/]: {'; '.join(detail)} "
                  f"({time.perf_counter() - start:.1f} s)")


class LandCoverDataModule(BatchTransforms, GeoDataModule):
    """Imagery + labels → spatially blocked train/val/test patches.

    Normalisation statistics (per-band mean and std over valid pixels) are computed on
    the training split only, travel in the checkpoint (``state_dict``) and are logged
    with the run; image pixels equal to ``image_nodata`` (or NaN) become label nodata.
    """

    def __init__(
        self,
        images: str,
        labels: str,
        label_kind: Literal["raster", "vector"] = "raster",
        all_bands: list[str] | None = None,
        bands: list[str] | None = None,
        rgb_bands: list[str] | None = None,
        image_glob: str = "s2l2a_*.tif",
        label_glob: str = "labels_*.tif",
        filename_regex: str = DATED_FILENAME_REGEX,
        label_field: str = "class",
        label_map: dict[int, int] | None = None,
        extra_labels: str | None = None,
        extra_label_field: str = "label",
        extra_label_glob: str = "*.geojson",
        classes: str | None = None,
        image_nodata: float | None = 0,
        reflectance_scale: float = 10000.0,
        split_by: Literal["block", "file"] = "block",
        block_size: int = 128,
        block_size_m: float | None = None,
        split_file: str | None = None,
        split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        split_seed: int = 0,
        batch_size: int = 8,
        patch_size: int | Literal["auto"] = 64,
        length: int | Literal["auto"] | None = None,
        eval_on: Literal["patches", "chips"] = "patches",
        patches_at: Literal["anywhere", "labels"] = "anywhere",
        num_workers: int = 0,
        stats_max_patches: int | None = None,
        augment: bool = True,
        brightness: float = 0.0,
        contrast: float = 0.0,
        holes: float = 0.0,
    ) -> None:
        """Configure the data; nothing is read until ``setup``.

        Args:
            images: Folder (or file) of imagery GeoTIFFs.
            labels: Folder (or file) of label rasters or vector labels.
            label_kind: ``raster`` (class codes) or ``vector`` (polygons/points).
            all_bands: Band names of the imagery in file order (default: S2 L2A 10).
            bands: Bands the model uses (default: all).
            rgb_bands: Bands for RGB composites in figures.
            image_glob: Glob of the imagery files.
            label_glob: Glob of the label files.
            filename_regex: Regex with an optional ``date`` group pairing images and
                labels of the same date.
            label_field: Attribute holding the class code (vector labels).
            label_map: Recode source label values to schema codes (others → nodata).
            extra_labels: Folder (or file) of more labels, points or polygons in the
                schema's codes (the map page's labelled points), trained together with
                ``labels``: where an extra feature gives a class it wins, elsewhere
                ``labels`` speak (:func:`~training.data.point_labels.overlay_masks`).
                Undated: every date.
            extra_label_field: Attribute of ``extra_labels`` holding the class code
                (the map page writes ``label``; empty ones are nodata).
            extra_label_glob: Glob of the ``extra_labels`` files.
            classes: Class schema YAML (default: ``datasets/classes.yaml``).
            image_nodata: Image value marking no observation (``None``: none).
            reflectance_scale: Digital numbers per unit reflectance (for the contract).
            split_by: Units of the split: grid ``block``s, or whole ``file``
                footprints (chip datasets; overlapping footprints stay together).
            block_size: Side of the split blocks in pixels.
            block_size_m: Side of the split blocks in ground metres (overrides
                ``block_size``; in a geographic CRS, degrees at the data's latitude).
            split_file: A user-given split, overriding ``split_by``: polygons with a
                ``split`` field, or a CSV of ``file,split``
                (:func:`training.data.splits.read_split_file`).
            split_fractions: Train, val and test fractions of the units.
            split_seed: Seed of the block assignment.
            batch_size: Patches per batch.
            patch_size: Patch side in pixels; ``auto``: the training chips' side (the
                median chip), at most 256 px, a multiple of 32: a 128-px chip is seen
                whole, a 512-px chip through a quarter of it.
            length: Training patches per epoch (default: the sampler's estimate);
                ``auto``: as many as cover the training chips once (chips x
                (side / patch)^2), at least 16 batches and at least 2**22 pixels
                (:func:`auto_length`).
            eval_on: Validation and test on ``patches`` of ``patch_size``, or on whole
                ``chips`` (the same pixels every epoch; with the task's ``eval_tile``,
                through the service's windows).
            patches_at: Where training patches are drawn: ``anywhere`` in the training
                area, or around the ``labels`` (vector labels: each patch holds at least
                one labelled point, :class:`~training.data.samplers.LabelledPatchSampler`;
                for a sparse sample of points, where a patch drawn anywhere rarely holds
                one). With ``length`` unset, an epoch has one patch per labelled point
                (at least one batch).
            num_workers: Data-loader worker processes.
            stats_max_patches: Patches read for the statistics (None: all of train).
            augment: Random flips and 90° rotations in training.
            brightness: Training jitter: a reflectance offset drawn per patch in
                ``±brightness`` (reflectance units, e.g. 0.02), added to observed
                pixels in digital numbers (``x reflectance_scale``).
            contrast: Training jitter: a gain drawn per patch in ``1 ± contrast``.
            holes: Share of training patches given a rectangle of no data (15-50 % of
                the side, as a cloud the masks took out), filled like any unobserved
                pixel and left out of the loss, so that the model learns to classify
                next to unobserved pixels (composites have holes; tiles at cloud edges).
                Jittered reflectance never goes below zero.
        """
        super().__init__(
            GeoDataset,  # type: ignore[type-abstract]  # datasets are built in setup()
            batch_size=batch_size, patch_size=64 if patch_size == "auto" else patch_size,
            length=None if length == "auto" else length,
            num_workers=num_workers,
        )
        self.save_hyperparameters()
        self.schema: ClassSchema = load_classes(classes)
        self.all_bands = list(all_bands or DEFAULT_BANDS)
        self.bands = list(bands or self.all_bands)
        unknown = set(self.bands) - set(self.all_bands)
        if unknown:
            raise ValueError(f"bands {sorted(unknown)} are not in all_bands")
        self.rgb_bands = list(rgb_bands or self.bands[:3][::-1])
        self.mean: Tensor | None = None  # type: ignore[assignment]
        self.std: Tensor | None = None  # type: ignore[assignment]
        self.class_pixels: Tensor | None = None
        self.assignment: BlockAssignment | None = None
        self.provenance: dict[str, Any] = {}

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> LandCoverDataModule:
        """The data module a checkpoint was trained with, from its saved hyperparameters.

        The checkpoint also keeps what LightningCLI linked in (e.g. the class schema's
        derived values): only the data module's own arguments are passed back.
        """
        accepted = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in hparams.items() if k in accepted})

    # ----------------------------------------------------- linked to the model
    @property
    def num_classes(self) -> int:
        """Logit channels, nodata included (codes are channel indices)."""
        return self.schema.num_classes

    @property
    def in_channels(self) -> int:
        """Input channels of the model."""
        return len(self.bands)

    @property
    def class_schema(self) -> dict[str, Any]:
        """The class schema as a dict, carried by the model's hyperparameters."""
        return self.schema.to_dict()

    @property
    def rgb_indices(self) -> list[int]:
        """Channel indices of the RGB composite bands."""
        return [self.bands.index(b) for b in self.rgb_bands if b in self.bands]

    # ------------------------------------------------------------------ setup
    def build_dataset(self) -> IntersectionDataset:
        """Imagery ∩ labels over the configured files (all dates)."""
        hp = self.hparams
        image = MultispectralImagery(
            hp["images"], bands=self.bands, all_bands=self.all_bands,
            filename_glob=hp["image_glob"], filename_regex=hp["filename_regex"],
        )
        mask: GeoDataset
        if hp["label_kind"] == "raster":
            mask = LandCoverRaster(
                hp["labels"], filename_glob=hp["label_glob"],
                filename_regex=hp["filename_regex"], label_map=hp["label_map"],
            )
        else:
            mask = LandCoverVectors(
                hp["labels"], label_field=hp["label_field"],
                filename_glob=hp["label_glob"], filename_regex=hp["filename_regex"],
                label_map=hp["label_map"], res=image.res[0],
            )
        if hp["extra_labels"]:
            extra = LandCoverVectors(
                hp["extra_labels"], label_field=hp["extra_label_field"],
                filename_glob=hp["extra_label_glob"], filename_regex=".*",
                res=image.res[0],
            )
            mask = UnionDataset(mask, extra, collate_fn=overlay_masks)
        return image & mask

    def setup(self, stage: str) -> None:
        """Build the dataset, the spatial split and the samplers (timed, on the console)."""
        with _step("indexed imagery and labels") as said:
            dataset = self.build_dataset()
            said(f"{len(dataset.index)} entries in {dataset.crs.to_string()}")
        with _step("split") as said:
            self.assignment = self.assign(dataset)
            train, val, test = split_by_blocks(dataset, self.assignment)
            units = "/".join(str(c) for c in self.assignment.counts())
            entries = "/".join(str(len(d.index)) for d in (train, val, test))
            said(f"{units} units, {entries} entries (train/val/test)")
        self.train_dataset, self.val_dataset, self.test_dataset = train, val, test
        self._size_patches(train)
        size = self.patch_size
        if stage == "fit":
            # Patches drawn one by one from any block (RandomBatchGeoSampler would take
            # a whole batch from one block: correlated batches, unstable BatchNorm).
            self.train_sampler = self._train_sampler(train, size)
        if stage in ("fit", "validate"):
            self.val_sampler = self._eval_sampler(val)
        if stage == "test":
            self.test_sampler = self._eval_sampler(test)

    def _train_sampler(self, train: GeoDataset, size: int | tuple[int, int]) -> GeoSampler:
        """Random patches anywhere, or around the labelled points (``patches_at``)."""
        if self.hparams["patches_at"] == "anywhere":
            return RandomGeoSampler(train, size, self.length)
        if self.hparams["label_kind"] != "vector" and not self.hparams["extra_labels"]:
            raise ValueError("patches_at: labels needs label_kind: vector or extra_labels "
                             "(points or polygons); label rasters are dense, use anywhere")
        xs, ys = self.label_points(train.index.crs)
        length = self.length or max(len(xs), self.batch_size)
        side = size if isinstance(size, int) else size[0]
        sampler = LabelledPatchSampler(train, side, length, xs, ys)
        CONSOLE.print(f"[bold]patches[/]: {length} per epoch around the "
                      f"{sampler.points} labelled points of the training split")
        return sampler

    def label_points(self, crs: Any) -> tuple[list[float], list[float]]:
        """The x and y (in ``crs``) of the labelled features of the vector label files.

        Both ``labels`` (when vector) and ``extra_labels`` count
        (:func:`~training.data.point_labels.labelled_points`).
        """
        hp = self.hparams
        sources: list[tuple[Path, str, dict[int, int] | None]] = []
        if hp["label_kind"] == "vector":
            primary = self.build_dataset().datasets[1]
            if isinstance(primary, UnionDataset):
                primary = primary.datasets[0]
            sources += [(Path(f), hp["label_field"], hp["label_map"])
                        for f in primary.index["filepath"]]
        if hp["extra_labels"]:
            extra = LandCoverVectors(hp["extra_labels"], filename_glob=hp["extra_label_glob"],
                                     filename_regex=".*")
            sources += [(Path(f), hp["extra_label_field"], None)
                        for f in extra.index["filepath"]]
        return labelled_points(sources, crs, self.schema.nodata)

    def _size_patches(self, train: GeoDataset) -> None:
        """Resolve ``patch_size``/``length`` of ``auto`` from the training chips; print."""
        hp = self.hparams
        if hp["patch_size"] != "auto" and hp["length"] != "auto":
            return
        sides = chip_sides(train)
        side = sorted(sides)[len(sides) // 2]  # the median chip
        patch = int(max(32, min(side, MAX_AUTO_PATCH) // 32 * 32))
        if hp["patch_size"] == "auto":
            self.patch_size = patch
        else:
            patch = int(hp["patch_size"])
        if hp["length"] == "auto":
            per_chip = max(1, round((side / patch) ** 2))
            self.length = auto_length(len(sides), per_chip, patch, self.batch_size)
        CONSOLE.print(f"[bold]patches[/]: {self.patch_size} px from {len(sides)} training "
                      f"chips of {side} px (median), {self.length} per epoch")

    def _eval_sampler(self, dataset: GeoDataset) -> GeoSampler:
        """Validation/test windows: patches, or whole chips (``eval_on``).

        Each chip is one window of the largest chip's side (512-px chips in EPSG:4326
        at different latitudes are 500-520 dataset pixels); pixels beyond a smaller
        chip are nodata, not scored.
        """
        if self.hparams["eval_on"] == "chips":
            return WholeChipSampler(dataset, max(chip_sides(dataset, whole=False)))
        return GridGeoSampler(dataset, self.patch_size, self.patch_size)

    def assign(self, dataset: GeoDataset) -> BlockAssignment:
        """Units of the split (blocks, files or the split file) and their splits."""
        hp = self.hparams
        index = dataset.index
        if hp["split_file"]:
            return read_split_file(hp["split_file"], index)
        if hp["split_by"] == "file":
            return assign_files(index, hp["split_fractions"], hp["split_seed"])
        bounds: tuple[float, float, float, float] = tuple(index.total_bounds)  # type: ignore[assignment]
        size: float | tuple[float, float] = hp["block_size"] * dataset.res[0]
        if hp["block_size_m"] is not None:
            size = block_size_in_crs_units(hp["block_size_m"], CRS.from_user_input(
                dataset.crs.to_wkt()), bounds)
        return assign_blocks(index.geometry.values, bounds, size,
                             hp["split_fractions"], hp["split_seed"])

    def _dataloader_factory(self, split: str) -> Any:
        self.ensure_statistics()
        return super()._dataloader_factory(split)

    # ------------------------------------------------------------- statistics
    def ensure_statistics(self) -> None:
        """Compute normalisation statistics on the training split if not loaded."""
        if self.mean is None or self.std is None:
            self.compute_statistics()
        self._build_augmentations()

    def compute_statistics(self) -> None:
        """Per-band mean/std over valid training pixels, and class pixel counts."""
        train = self.train_dataset
        assert isinstance(train, GeoDataset), "call setup('fit') first"
        sampler = GridGeoSampler(train, self.patch_size, self.patch_size)
        limit = self.hparams["stats_max_patches"]
        n_bands = len(self.bands)
        total = torch.zeros(n_bands, dtype=torch.float64)
        total_sq = torch.zeros(n_bands, dtype=torch.float64)
        per_band = torch.zeros(n_bands, dtype=torch.float64)  # each band over its sensor's
        groups = sensor_groups(self.bands)
        count = 0
        classes = torch.zeros(self.num_classes, dtype=torch.float64)
        patches = len(sampler) if limit is None else min(limit, len(sampler))
        start = time.perf_counter()
        for i, query in enumerate(track(sampler, "normalisation statistics",
                                        total=patches, transient=True, console=CONSOLE)):
            if i >= patches:
                break
            sample = train[query]
            image = sample["image"].double().flatten(1)
            valid = self._valid_pixels(sample["image"]).flatten()
            for group, seen in zip(groups, observed_by_sensor(
                    sample["image"], self.hparams["image_nodata"], groups), strict=True):
                seen = seen.flatten()
                total[group] += image[group][:, seen].sum(1)
                total_sq[group] += (image[group][:, seen] ** 2).sum(1)
                per_band[group] += int(seen.sum())
            count += int(valid.sum())
            mask = sample["mask"].flatten()[valid].clamp(0, self.num_classes - 1)
            classes += torch.bincount(mask, minlength=self.num_classes).double()
        if count == 0:
            raise ValueError("the training split has no valid image pixels")
        CONSOLE.print(f"[bold]normalisation statistics[/]: {patches} training patches "
                      f"({time.perf_counter() - start:.1f} s)")
        per_band = per_band.clamp_min(1)
        mean = total / per_band
        std = (total_sq / per_band - mean**2).clamp_min(1e-12).sqrt()
        self.mean, self.std = mean.float(), std.float()
        self.class_pixels = classes
        images, labels = self.files()
        with rasterio.open(images[0]) as src:
            input_dtype = str(src.dtypes[0])
            pixel_size = ground_pixel_size(src.crs, src.transform, src.height, src.width)
        self.provenance = {
            "input_dtype": input_dtype,
            "pixel_size_m": pixel_size,
            "dataset_fingerprint": dataset_fingerprint(images + labels),
        }

    def statistics(self) -> dict[str, Any]:
        """What the contract and the run record: bands, scale, mean, std, nodata."""
        assert self.mean is not None and self.std is not None
        return {
            "bands": self.bands,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "image_nodata": self.hparams["image_nodata"],
            "reflectance_scale": self.hparams["reflectance_scale"],
            "class_pixels": None if self.class_pixels is None
            else self.class_pixels.long().tolist(),
            **self.provenance,
        }

    def state_dict(self) -> dict[str, Any]:
        """Saved into checkpoints: the normalisation the model was trained with."""
        if self.mean is None:
            return {}
        return {"statistics": json.dumps(self.statistics())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the normalisation from a checkpoint (resume, validate, test)."""
        if "statistics" in state_dict:
            stats = json.loads(state_dict["statistics"])
            self.mean = torch.tensor(stats["mean"])
            self.std = torch.tensor(stats["std"])
            self.provenance = {k: stats.get(k) for k in
                               ("input_dtype", "pixel_size_m", "dataset_fingerprint")}
            if stats.get("class_pixels") is not None:
                self.class_pixels = torch.tensor(stats["class_pixels"], dtype=torch.float64)

    def files(self) -> tuple[list[Path], list[Path]]:
        """The imagery files and the label files the dataset reads (extra ones too)."""
        image, mask = self.build_dataset().datasets
        return (sorted(Path(f) for f in image.index["filepath"]),
                sorted({Path(f) for f in mask.index["filepath"]}))

    def dataset_files(self) -> list[Path]:
        """All files the dataset reads (for the fingerprint)."""
        images, labels = self.files()
        return images + labels
