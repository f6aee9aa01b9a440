"""Scoring against labels: the same numbers as the trainer's torchmetrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torchmetrics.classification import (
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from serving.classes import load_classes
from serving.inference.evaluation import (
    EvaluationError,
    ScoreTable,
    confusion_of,
    labels_on_grid,
    pair_labels,
)


def test_table_equals_torchmetrics_with_nodata_ignored() -> None:
    schema = load_classes(None)
    n = schema.num_classes
    rng = np.random.default_rng(4)
    truth = rng.integers(0, n, 50_000)
    truth[truth == n - 1] = 1  # one class absent from the reference
    predicted = np.where(rng.random(truth.size) < 0.7, truth, rng.integers(0, n, truth.size))
    table = ScoreTable.from_confusion(confusion_of(truth, predicted, n, [schema.nodata]),
                                      schema)
    kwargs = {"num_classes": n, "ignore_index": schema.nodata, "average": "none"}
    expected = {
        "IoU": MulticlassJaccardIndex(**kwargs), "F1": MulticlassF1Score(**kwargs),
        "precision": MulticlassPrecision(**kwargs), "recall": MulticlassRecall(**kwargs)}
    present = [c for c in schema.valid_codes if c != n - 1]
    for name, metric in expected.items():
        values = metric(torch.from_numpy(predicted), torch.from_numpy(truth)).double()
        for c in schema.valid_codes:
            got = table.table[name][schema.classes[c].name]
            if c in present:
                assert got == pytest.approx(float(values[c]), abs=1e-6), (name, c)
            else:
                assert math.isnan(got)
        assert table.table[name]["macro"] == pytest.approx(
            float(values[present].mean()), abs=1e-6)
    scored = truth != schema.nodata
    assert table.pixels == scored.sum()
    assert table.accuracy == pytest.approx(np.mean(truth[scored] == predicted[scored]))
    assert table.to_dict()["metrics"]["IoU"][schema.classes[n - 1].name] is None


def test_codes_outside_the_schema_are_refused() -> None:
    with pytest.raises(EvaluationError, match=r"labels hold codes outside 0..3: \[7\]"):
        confusion_of(np.array([1, 7]), np.array([1, 1]), 4)


def _raster(path: Path, data: np.ndarray, crs: str | None = "EPSG:32718") -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=crs,
                       transform=from_origin(300000, 9000000, 10, 10)) as dst:
        dst.write(data, 1)
    return path


def test_labels_are_read_onto_the_class_map_grid(tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely

    labels = np.arange(16, dtype=np.uint8).reshape(4, 4) % 3
    _raster(tmp_path / "l.tif", labels)
    # the class map covers the labels' lower-right 2 x 2 pixels and one pixel beyond
    grid = {"crs": "EPSG:32718", "transform": from_origin(300020, 8999980, 10, 10),
            "width": 3, "height": 3}
    got = labels_on_grid(tmp_path / "l.tif", grid, label_map={1: 2, 2: 1})
    assert got[:2, :2].tolist() == [[2, 1], [1, 0]]
    assert (got[2] == 0).all() and (got[:, 2] == 0).all()

    points = gpd.GeoDataFrame({"code": [1, 2]}, geometry=[
        shapely.Point(300025, 8999975), shapely.Point(300045, 8999955)], crs="EPSG:32718")
    points.to_crs("EPSG:4326").to_file(tmp_path / "p.gpkg")
    burned = labels_on_grid(tmp_path / "p.gpkg", grid, label_field="code")
    assert burned[0, 0] == 1 and burned[2, 2] == 2 and (burned > 0).sum() == 2
    with pytest.raises(EvaluationError, match="no field 'class'"):
        labels_on_grid(tmp_path / "p.gpkg", grid)
    _raster(tmp_path / "nocrs.tif", labels, crs=None)
    with pytest.raises(EvaluationError, match="the label raster has no CRS"):
        labels_on_grid(tmp_path / "nocrs.tif", grid)


def test_images_pair_with_labels_of_their_name(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.tif").touch()
    images = [tmp_path / "a.tif", tmp_path / "b.tif"]
    with pytest.raises(EvaluationError, match=r"named like the images \['b.tif'\]"):
        pair_labels(images, tmp_path / "labels")
    assert pair_labels(images, tmp_path / "labels" / "a.tif")[1] == (
        images[1], tmp_path / "labels" / "a.tif")
