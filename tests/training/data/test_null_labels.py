"""Points marked "can't tell" in the map page (``label: null``) are not labels."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rasterio.transform import from_origin

from serving.inference.evaluation import labels_on_grid
from training.data.datasets import LandCoverVectors


def _points(folder: Path) -> Path:
    features = [{"type": "Feature", "properties": {"label": code},
                 "geometry": {"type": "Point", "coordinates": [500005 + 10 * i, 9000005]}}
                for i, code in enumerate([2, None])]
    path = folder / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                                "crs": {"type": "name",
                                        "properties": {"name": "EPSG:32718"}}}))
    return path


def test_a_null_label_is_nodata_in_training_and_in_scoring(tmp_path: Path) -> None:
    path = _points(tmp_path)
    grid = {"crs": "EPSG:32718", "transform": from_origin(500000, 9000010, 10, 10),
            "width": 3, "height": 1}
    assert labels_on_grid(path, grid, "label").tolist() == [[2, 0, 0]]
    dataset = LandCoverVectors(str(tmp_path), label_field="label",
                               filename_glob="labels.geojson", filename_regex=".*")
    assert [dataset.get_label(pd.Series({"label": v}))
            for v in (None, float("nan"), 3)] == [0, 0, 3]
