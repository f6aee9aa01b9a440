"""``cacaomap model evaluate``: score a model against labels on disk, recorded in MLflow.

Two ways in, one table out (:class:`serving.inference.evaluation.ScoreTable`):

- an exported model (ONNX) on labelled images: each image is classified through the
  path that serves (``TileClassifier`` + the scene path) and scored on its label raster,
  polygons or points (:func:`serving.inference.evaluation.evaluate_images`); a
  checkpoint given with images is exported to a temporary folder first;
- a checkpoint alone on its own data module's split (``test`` by default): patches as
  the trainer draws them, so the table is the trainer's test table, on the same pixels.

Outputs (written all at once into ``<out>/<name>/``): ``metrics.json`` (tables,
support, pooled accuracy, confusion, per image), ``per_class.csv``, ``per_image.csv``,
``confusion.png``; and an MLflow run in the evaluation experiment, tagged with the
evaluated model's training run and registered version, so that researchers compare
models on a fixed test set side by side.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rich.console import Console
from rich.table import Table

from serving.files import staged

if TYPE_CHECKING:  # ONNX Runtime and rasterio load only when a command runs
    from serving.classes import ClassSchema
    from serving.inference.evaluation import Evaluation

CONSOLE = Console()
EXPERIMENT = "cacaomap-evaluation"


def score_checkpoint_split(checkpoint: Path, split: Literal["train", "val", "test"],
                           tta: str = "none"
                           ) -> tuple[Evaluation, ClassSchema, dict[str, Any]]:
    """Score a checkpoint on a split of the data it was trained on, as the trainer does.

    Patches come from the data module rebuilt from the checkpoint's hyperparameters and
    normalised with its statistics; nodata handling is the data module's own. ``tta``:
    the test-time augmentation of each window (:mod:`serving.inference.tta`).
    """
    import torch

    from serving.inference.evaluation import (
        Evaluation,
        EvaluationError,
        ScoreTable,
        confusion_of,
    )
    from training.data.datamodule import LandCoverDataModule
    from training.export.exporter import load_checkpoint
    from training.tracking import checkpoint_run_id

    loaded = load_checkpoint(checkpoint)
    dm = LandCoverDataModule.from_hparams(loaded.data_hparams)
    dm.setup({"train": "fit", "val": "validate", "test": "test"}[split])
    dm.load_state_dict({"statistics": json.dumps(loaded.statistics)})
    dm.ensure_statistics()
    if split == "train":  # the trainer samples training patches at random: use a grid
        from torchgeo.datasets import GeoDataset
        from torchgeo.samplers import GridGeoSampler

        train = dm.train_dataset
        assert isinstance(train, GeoDataset)
        dm.test_dataset = train
        dm.test_sampler = GridGeoSampler(train, dm.patch_size, dm.patch_size)
        split = "test"
    loader = getattr(dm, f"{split}_dataloader")()
    schema, task = dm.schema, loaded.task
    n = schema.num_classes
    confusion = np.zeros((n, n), np.int64)
    with torch.no_grad():
        for batch in loader:
            batch = dm.aug(dm.on_after_batch_transfer(batch, 0))
            predicted = task.eval_logits(batch["image"], tta).argmax(1)  # as the trainer tests
            confusion += confusion_of(batch["mask"].numpy(), predicted.numpy(), n,
                                      ignore=[schema.nodata])
    if confusion.sum() == 0:
        raise EvaluationError(f"the {split} split of {checkpoint} holds no labelled pixel")
    about = {"checkpoint": str(checkpoint), "split": split,
             "mlflow_run_id": checkpoint_run_id(checkpoint), "tta": tta,
             "images": loaded.data_hparams.get("images"),
             "labels": loaded.data_hparams.get("labels")}
    return Evaluation(pooled=ScoreTable.from_confusion(confusion, schema)), schema, about


def split_area(data_hparams: Mapping[str, Any], split: Literal["train", "val", "test"]
               ) -> tuple[Any, Any]:
    """The ground of one split of a checkpoint's data, as ``(geometry, crs)``.

    The data module is rebuilt from the checkpoint's hyperparameters and its units
    (blocks, files or the split file) assigned again: the same seed gives the same
    split the model was trained and tested with.
    """
    from training.data.datamodule import LandCoverDataModule
    from training.data.splits import SPLIT_NAMES

    dm = LandCoverDataModule.from_hparams(dict(data_hparams))
    dataset = dm.build_dataset()
    assignment = dm.assign(dataset)
    return assignment.geometry(SPLIT_NAMES.index(split)), dataset.index.crs


def registered_version(run_id: str | None) -> str | None:
    """``models:/<name>/<version>`` of the registered version made from ``run_id``."""
    if not run_id:
        return None
    import mlflow

    from training.tracking import resolve_tracking_uri

    client = mlflow.MlflowClient(resolve_tracking_uri())
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return None
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return f"models:/{newest.name}/{newest.version}"


# ------------------------------------------------------------------ outputs
def print_evaluation(result: Evaluation, title: str) -> None:
    """Per-class table with support, pooled accuracy, and a per-image table."""
    from serving.inference.evaluation import METRICS

    pooled = result.pooled
    table = Table(title=title)
    table.add_column("class")
    for m in METRICS:
        table.add_column(m, justify="right")
    table.add_column("support", justify="right")
    for name in pooled.table["IoU"]:
        table.add_row(name, *(_fmt(pooled.table[m][name]) for m in METRICS),
                      str(pooled.support.get(name, "")),
                      style="bold" if name == "macro" else None)
    CONSOLE.print(table)
    CONSOLE.print(f"pooled accuracy {pooled.accuracy:.4f} over {pooled.pixels} pixels")
    if result.uncertainty:
        u = result.uncertainty
        CONSOLE.print(f"mean uncertainty (1 - confidence): {_fmt(u['right'])} where the "
                      f"model is right ({u['right_pixels']} px), {_fmt(u['wrong'])} where "
                      f"it is wrong ({u['wrong_pixels']} px)")
    if result.per_image:
        chips = Table(title="Per image")
        for column in ("image", "pixels", "accuracy", "IoU macro", "F1 macro", "unobserved"):
            chips.add_column(column, justify="left" if column == "image" else "right")
        for name, score in result.per_image.items():
            chips.add_row(name, str(score.pixels), _fmt(score.accuracy),
                          _fmt(score.table["IoU"]["macro"]), _fmt(score.table["F1"]["macro"]),
                          str(result.unobserved.get(name, 0)))
        CONSOLE.print(chips)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["empty"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(folder: Path, result: Evaluation, schema: ClassSchema,
                  about: Mapping[str, Any]) -> Path:
    """``metrics.json``, ``per_class.csv``, ``per_image.csv``, ``confusion.png``, at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from serving.inference.evaluation import METRICS
    from training.trainers.figures import confusion_matrix_figure

    pooled = result.pooled
    per_class = [{"class": name, **{m: pooled.table[m][name] for m in METRICS},
                  "support": pooled.support.get(name, "")} for name in pooled.table["IoU"]]
    per_image = [{"image": name, "pixels": s.pixels, "accuracy": s.accuracy,
                  **{f"{m}_{c}": s.table[m][c] for m in METRICS for c in s.table[m]},
                  "unobserved": result.unobserved.get(name, 0)}
                 for name, s in result.per_image.items()]
    document = {**about, "pooled": pooled.to_dict(),
                "per_image": {k: v.to_dict() for k, v in result.per_image.items()},
                "unobserved": result.unobserved, "uncertainty": result.uncertainty}
    with staged(folder, directory=True) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(document, indent=2, default=str))
        (tmp / "per_class.csv").write_text(_csv(per_class))
        (tmp / "per_image.csv").write_text(_csv(per_image))
        fig = confusion_matrix_figure(pooled.confusion, schema,
                                      f"Confusion matrix: {about.get('model') or ''}")
        fig.savefig(tmp / "confusion.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    return folder


def log_evaluation(folder: Path, result: Evaluation, about: Mapping[str, Any],
                   experiment: str, run_name: str) -> str:
    """An MLflow run with the pooled metrics, the outputs, and the model's lineage."""
    import mlflow

    from training.tracking import ensure_experiment

    experiment_id = ensure_experiment(experiment)
    tags = {"cacaomap.kind": "evaluation"}
    if about.get("mlflow_run_id"):
        tags["cacaomap.model_run_id"] = str(about["mlflow_run_id"])
    if about.get("model_version"):
        tags["cacaomap.model_version"] = str(about["model_version"])
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                          tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in about.items() if v is not None})
        mlflow.log_metrics(result.pooled.flat("eval_"))
        mlflow.log_metric("eval_pixels", result.pooled.pixels)
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
    return str(run.info.run_id)


# ----------------------------------------------------------------- command
def evaluate(
    images: Path | None = None,
    labels: Path | None = None,
    model: Path | None = None,
    checkpoint: Path | None = None,
    split: Literal["train", "val", "test"] = "test",
    within_split: Literal["train", "val", "test"] | None = None,
    image_glob: str = "*.tif",
    label_field: str = "class",
    label_map: dict[int, int] | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    tta: Literal["none", "flips", "d4"] = "none",
    out: Path = Path("experiments/evaluations"),
    name: str | None = None,
    experiment: str = EXPERIMENT,
    mlflow_log: bool = True,
) -> Path:
    r"""Score a model against labelled rasters, polygons or points, through the served path.

    Args:
        images: An image GeoTIFF or a folder of them (chips); with ``labels``.
        labels: One label raster or vector file for all images, or a folder of label
            rasters named like the images.
        model: Exported model folder (default: the newest under models/cacaomap/).
        checkpoint: A Lightning checkpoint: alone, scored on its data module's
            ``split``; with ``images``, exported to a temporary folder and scored on them.
        split: The checkpoint's split to score when no images are given.
        within_split: With ``images`` and ``checkpoint``: score only the pixels on the
            ground of this split of the checkpoint's data (e.g. ``test``: the blocks
            the model never saw), through the path that serves.
        image_glob: Glob of the images in an ``images`` folder.
        label_field: Attribute holding the class code (vector labels).
        label_map: Recode label values to the model's class codes (others: nodata).
        overlap: Overlap between scene windows (default: the contract's).
        batch_size: Windows per ONNX Runtime call.
        tta: Test-time augmentation: each window's logits averaged over ``flips``
            (4 runs) or the eight ``d4`` symmetries (as ``CACAOMAP_TTA`` serves).
        out: Folder of evaluation outputs; each evaluation writes ``<out>/<name>/``.
        name: Name of this evaluation (default: model and time).
        experiment: MLflow experiment of evaluation runs.
        mlflow_log: Record the evaluation as an MLflow run.

    Returns:
        The output folder.

    Raises:
        ValueError: With a message naming the problem, for flags, labels or images
            that cannot be scored (an ``EvaluationError`` for the latter).

    Writes:
        OUT/NAME/: metrics.json (per-class IoU, F1, precision, recall, macro averages,
        mean uncertainty where right and wrong), metrics.csv, the confusion matrix
        (PNG), and an MLflow run in EXPERIMENT unless --no-mlflow-log.

    Examples:
        cacaomap model evaluate --images chips/images --labels chips/labels \
            --model models/cacaomap/v2
        cacaomap model evaluate --images plots.tif --labels points.gpkg \
            --label-field code --label-map 1=1 4=2
        cacaomap model evaluate --checkpoint runs/best.ckpt --split test
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    if images is None:
        if checkpoint is None:
            raise ValueError("give --images and --labels, or --checkpoint (scored on "
                             "its own data's split)")
        result, schema, about = score_checkpoint_split(checkpoint, split, tta)
        about["model"] = f"checkpoint {checkpoint.name}"
        title = f"{split} split of the checkpoint's data"
    else:
        if labels is None:
            raise ValueError("--images needs --labels")
        if within_split is not None and checkpoint is None:
            raise ValueError("--within-split needs --checkpoint (the split is rebuilt "
                             "from the checkpoint's data)")
        result, schema, about = _score_images(images, labels, model, checkpoint,
                                              image_glob, label_field, label_map,
                                              overlap, batch_size, tta, within_split)
        title = f"{about['model']} on {images}"
    about["model_version"] = registered_version(about.get("mlflow_run_id"))
    print_evaluation(result, title)
    run_name = name or f"{str(about['model']).replace(' ', '-')}-{stamp}"
    folder = write_outputs(out / run_name, result, schema, about)
    CONSOLE.print(f"wrote {folder}")
    if mlflow_log:
        run_id = log_evaluation(folder, result, about, experiment, run_name)
        CONSOLE.print(f"MLflow run {run_id} in experiment {experiment!r}")
    return folder


def _score_images(images: Path, labels: Path, model: Path | None, checkpoint: Path | None,
                  image_glob: str, label_field: str, label_map: dict[int, int] | None,
                  overlap: int | None, batch_size: int, tta: str = "none",
                  within_split: Literal["train", "val", "test"] | None = None
                  ) -> tuple[Evaluation, ClassSchema, dict[str, Any]]:
    from serving.inference.contract import load_model_dir
    from serving.inference.evaluation import evaluate_images, pair_labels
    from serving.inference.model_store import resolve_model_dir
    from serving.inference.tiles import TileClassifier

    files = sorted(images.glob(image_glob)) if images.is_dir() else [images]
    if not files:
        raise ValueError(f"no images matching {image_glob!r} under {images}")
    pairs = pair_labels(files, labels)
    within = None
    if within_split is not None and checkpoint is not None:
        from training.export.exporter import load_checkpoint

        within = split_area(load_checkpoint(checkpoint).data_hparams, within_split)
    with tempfile.TemporaryDirectory(prefix="cacaomap-evaluate-model-") as tmp:
        if checkpoint is not None:
            from training.export.exporter import export_model

            model = export_model(checkpoint, models_dir=tmp, register=False,
                                 parity_images=files[0].parent)
        classifier = TileClassifier(*load_model_dir(resolve_model_dir(model)),
                                    tta=tta)  # type: ignore[arg-type]
        contract = classifier.contract
        result = evaluate_images(pairs, classifier, label_field=label_field,
                                 label_map=label_map, overlap=overlap,
                                 batch_size=batch_size, within=within,
                                 progress=CONSOLE.print)
    about = {"model": f"{contract.name} {contract.version} {contract.variant}",
             "onnx_sha256": contract.onnx_sha256, "mlflow_run_id": contract.mlflow_run_id,
             "checkpoint": str(checkpoint) if checkpoint else None,
             "images": str(images), "labels": str(labels), "image_count": len(pairs),
             "tta": tta, "within_split": within_split,
             "label_map": label_map}
    return result, contract.schema, about
