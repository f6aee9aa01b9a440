"""Scoring class maps against labels on disk: per-class, macro, pooled and per-chip.

The model runs through the path that serves (:func:`serving.inference.scene.
classify_file` with a :class:`~serving.inference.tiles.TileClassifier`), and its class
map is compared with the labels on the class map's grid:

- label rasters (any grid: read through a nearest-neighbour ``WarpedVRT`` onto it);
- polygons or points (any vector file; rasterised onto it, a point burns its pixel).

Pixels whose label is nodata, and pixels the image did not observe (class map nodata:
not a model error), are left out; their counts are reported. Metrics follow
torchmetrics' multiclass definitions with the nodata code ignored, so a table from
here and the trainer's test table agree on the same pixels and predictions.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio import features
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from serving.classes import ClassSchema
from serving.inference.confidence import decode_confidence
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier

#: Per-class metrics, as the trainer logs them.
METRICS = ("IoU", "F1", "precision", "recall")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".parquet")


class EvaluationError(ValueError):
    """Labels or images that cannot be scored (the message names the file and why)."""


def confusion_of(reference: NDArray[Any], predicted: NDArray[Any], num_classes: int,
                 ignore: Sequence[int] = ()) -> NDArray[np.int64]:
    """Pixel counts ``[reference, predicted]`` over pixels whose reference is not ignored.

    Raises:
        EvaluationError: If a value is outside ``0..num_classes-1``.
    """
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.asarray(predicted).ravel().astype(np.int64)
    keep = ~np.isin(ref, list(ignore))
    ref, pred = ref[keep], pred[keep]
    for name, values in (("labels", ref), ("predictions", pred)):
        outside = np.unique(values[(values < 0) | (values >= num_classes)])
        if outside.size:
            raise EvaluationError(f"{name} hold codes outside 0..{num_classes - 1}: "
                                  f"{outside[:10].tolist()} (use label_map)")
    return np.bincount(ref * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes)


@dataclass(frozen=True)
class ScoreTable:
    """Per-class metrics of a confusion matrix, nodata left out.

    Attributes:
        confusion: Pixel counts ``[reference, predicted]`` (all codes).
        table: ``{metric: {class name or "macro": value}}``; a class without reference
            pixels is NaN and stays out of the macro average (as in the trainer).
        support: Reference pixels per class name.
        accuracy: Pooled overall accuracy (correct / scored pixels).
        pixels: Scored pixels.
    """

    confusion: NDArray[np.int64]
    table: dict[str, dict[str, float]]
    support: dict[str, int]
    accuracy: float
    pixels: int

    @classmethod
    def from_confusion(cls, confusion: NDArray[Any], schema: ClassSchema) -> ScoreTable:
        """Score a confusion matrix the way torchmetrics does with ``ignore_index``."""
        m = np.asarray(confusion, dtype=np.float64)
        m[schema.nodata, :] = 0  # ignored references
        tp = np.diag(m)
        fp = m.sum(0) - tp
        fn = m.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = {"IoU": tp / (tp + fp + fn), "F1": 2 * tp / (2 * tp + fp + fn),
                         "precision": tp / (tp + fp), "recall": tp / (tp + fn)}
        support = m.sum(1)
        present = [c for c in schema.valid_codes if support[c] > 0]
        table: dict[str, dict[str, float]] = {}
        for name in METRICS:
            values = np.nan_to_num(per_class[name], nan=0.0)  # torchmetrics: 0 for 0/0
            row = {schema.classes[c].name: float(values[c]) if c in present else math.nan
                   for c in schema.valid_codes}
            row["macro"] = float(values[present].mean()) if present else math.nan
            table[name] = row
        total = float(m.sum())
        return cls(confusion=np.asarray(confusion, dtype=np.int64), table=table,
                   support={schema.classes[c].name: int(support[c])
                            for c in schema.valid_codes},
                   accuracy=float(tp.sum() / total) if total else math.nan,
                   pixels=int(total))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN → null): the table, support, accuracy, the confusion matrix."""
        return {"metrics": {m: {c: _finite(v) for c, v in row.items()}
                            for m, row in self.table.items()},
                "support": self.support, "accuracy": _finite(self.accuracy),
                "pixels": self.pixels, "confusion": self.confusion.tolist()}

    def flat(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}{metric}_{class}`` → value (MLflow metric names), NaN left out."""
        out = {f"{prefix}{m}_{c}": v for m, row in self.table.items()
               for c, v in row.items() if not math.isnan(v)}
        if not math.isnan(self.accuracy):
            out[f"{prefix}accuracy"] = self.accuracy
        return out


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass
class Evaluation:
    """Scores of a model over several images.

    Attributes:
        pooled: All scored pixels of all images together.
        per_image: Each image's own scores, by file name.
        unobserved: Labelled pixels the image did not observe, by file name.
        uncertainty: Mean uncertainty (one minus the confidence COG's probability,
            :mod:`serving.inference.confidence`) of the scored pixels the model got
            ``right`` and ``wrong``, and their counts (exported models only).
    """

    pooled: ScoreTable
    per_image: dict[str, ScoreTable] = field(default_factory=dict)
    unobserved: dict[str, int] = field(default_factory=dict)
    uncertainty: dict[str, float] = field(default_factory=dict)


def labels_on_grid(path: Path, profile: Mapping[str, Any], label_field: str = "class",
                   label_map: Mapping[int, int] | None = None, nodata: int = 0
                   ) -> NDArray[np.int64]:
    """Label codes on a class map's grid (``crs``, ``transform``, ``width``, ``height``).

    Args:
        path: A label raster or a vector file of polygons or points.
        profile: The grid to read onto.
        label_field: Attribute holding the class code (vectors).
        label_map: Recode source values to schema codes; values not in it → nodata.
        nodata: Code of "no label".

    Raises:
        EvaluationError: If the labels cannot be read, have no CRS, or miss the field.
    """
    shape = (profile["height"], profile["width"])
    if profile.get("crs") is None:
        raise EvaluationError("the class map has no CRS: labels cannot be placed on it")
    if path.suffix.lower() in VECTOR_SUFFIXES:
        import pandas as pd

        from serving.files import read_vector_file

        frame = read_vector_file(path, "labels", EvaluationError)
        if label_field not in frame.columns:
            raise EvaluationError(f"{path}: no field {label_field!r} "
                                  f"(fields: {[c for c in frame.columns if c != 'geometry']})")
        frame = frame.to_crs(profile["crs"])
        shapes = [(g, int(v)) for g, v in zip(frame.geometry, frame[label_field], strict=True)
                  if g is not None and not g.is_empty and pd.notna(v)]  # null: unlabelled
        raw = (features.rasterize(shapes, out_shape=shape, transform=profile["transform"],
                                  fill=nodata, dtype="int32")
               if shapes else np.full(shape, nodata, np.int32))
    else:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise EvaluationError(f"{path}: the label raster has no CRS")
                with WarpedVRT(src, crs=profile["crs"], transform=profile["transform"],
                               width=shape[1], height=shape[0],
                               resampling=Resampling.nearest,
                               src_nodata=src.nodata, nodata=nodata) as vrt:
                    raw = vrt.read(1).astype(np.int32)
        except rasterio.errors.RasterioError as error:
            raise EvaluationError(f"{path}: not a readable raster ({error})") from error
    out = raw.astype(np.int64)
    if label_map is not None:
        lut = {int(k): int(v) for k, v in label_map.items()}
        out = np.full(shape, nodata, np.int64)
        for source, code in lut.items():
            out[raw == source] = code
    return out


def pixels_within(area: tuple[Any, Any], profile: Mapping[str, Any]) -> NDArray[np.bool_]:
    """Boolean grid of a raster profile: True where a pixel's centre lies in ``area``.

    Args:
        area: ``(geometry, crs)``; the geometry is reprojected to the grid's CRS.
        profile: The grid (``crs``, ``transform``, ``width``, ``height``).
    """
    import geopandas as gpd

    geometry, crs = area
    shapes = gpd.GeoSeries([geometry], crs=crs).to_crs(profile["crs"])
    shape = (profile["height"], profile["width"])
    if shapes.iloc[0].is_empty:
        return np.zeros(shape, bool)
    return features.geometry_mask(list(shapes), out_shape=shape,
                                  transform=profile["transform"], invert=True)


def pair_labels(images: Sequence[Path], labels: Path) -> list[tuple[Path, Path]]:
    """Each image with its labels: one labels file for all, or the same file name.

    Raises:
        EvaluationError: If an image has no labels file of its name.
    """
    if labels.is_file():
        return [(image, labels) for image in images]
    found = {p.name: p for p in labels.rglob("*") if p.is_file()}
    stems = {p.stem: p for p in found.values()}
    pairs, missing = [], []
    for image in images:
        match = found.get(image.name) or stems.get(image.stem)
        if match is None:
            missing.append(image.name)
        else:
            pairs.append((image, match))
    if missing:
        raise EvaluationError(f"no labels under {labels} named like the images "
                              f"{missing[:5]}{' …' if len(missing) > 5 else ''}")
    return pairs


def evaluate_images(pairs: Sequence[tuple[Path, Path]], classifier: TileClassifier, *,
                    label_field: str = "class", label_map: Mapping[int, int] | None = None,
                    overlap: int | None = None, batch_size: int = 8,
                    within: tuple[Any, Any] | None = None,
                    progress: Callable[[str], None] | None = None) -> Evaluation:
    """Classify each image through the served scene path and score it on its labels.

    Args:
        pairs: Images and their labels (:func:`pair_labels`).
        classifier: The exported model.
        label_field: Attribute holding the class code (vector labels).
        label_map: Recode label values to the model's codes (others: nodata).
        overlap: Overlap between scene windows (default: the contract's).
        batch_size: Windows per ONNX Runtime call.
        within: ``(geometry, crs)``: score only the pixels whose centre lies in it (a
            held-out split's ground, :func:`training.evaluate.split_area`); images
            outside it are not classified.
        progress: Called with a line per image.

    Raises:
        EvaluationError: If no labelled, observed pixel is left to score.
    """
    schema = classifier.contract.schema
    n = schema.num_classes
    pooled = np.zeros((n, n), np.int64)
    result = Evaluation(pooled=ScoreTable.from_confusion(pooled, schema))
    sums = np.zeros(2)  # uncertainty summed over right, wrong scored pixels
    counts = np.zeros(2, np.int64)
    with tempfile.TemporaryDirectory(prefix="cacaomap-evaluate-") as tmp:
        for k, (image, labels) in enumerate(pairs):
            inside = None
            if within is not None:
                with rasterio.open(image) as src:
                    inside = pixels_within(within, src.profile)
                if not inside.any():
                    continue
            out = classify_file(image, Path(tmp) / "classes.tif", classifier,
                                overlap=overlap, batch_size=batch_size,
                                confidence=Path(tmp) / "confidence.tif")
            with rasterio.open(out.path) as src:
                predicted = src.read(1).astype(np.int64)
                truth = labels_on_grid(labels, src.profile, label_field, label_map,
                                       schema.nodata)
            with rasterio.open(Path(tmp) / "confidence.tif") as src:
                uncertainty = 1 - decode_confidence(src.read(1))
            if inside is not None:
                truth[~inside] = schema.nodata
            unobserved = (predicted == schema.nodata) & (truth != schema.nodata)
            truth[unobserved] = schema.nodata
            scored = (truth != schema.nodata) & np.isfinite(uncertainty)
            for i, part in enumerate((scored & (truth == predicted),
                                      scored & (truth != predicted))):
                sums[i] += uncertainty[part].sum()
                counts[i] += int(part.sum())
            confusion = confusion_of(truth, predicted, n, ignore=[schema.nodata])
            pooled += confusion
            result.per_image[image.name] = ScoreTable.from_confusion(confusion, schema)
            result.unobserved[image.name] = int(unobserved.sum())
            if progress is not None:
                progress(f"[{k + 1}/{len(pairs)}] {image.name}: "
                         f"{result.per_image[image.name].pixels} labelled pixels")
    if pooled.sum() == 0:
        raise EvaluationError("no labelled, observed pixel to score: do the labels "
                              "overlap the images, and does label_map cover their codes?")
    result.pooled = ScoreTable.from_confusion(pooled, schema)
    result.uncertainty = {
        "right": float(sums[0] / counts[0]) if counts[0] else math.nan,
        "wrong": float(sums[1] / counts[1]) if counts[1] else math.nan,
        "right_pixels": int(counts[0]), "wrong_pixels": int(counts[1])}
    return result


__all__ = [
    "Evaluation",
    "EvaluationError",
    "ScoreTable",
    "confusion_of",
    "evaluate_images",
    "labels_on_grid",
    "pair_labels",
    "pixels_within",
]
