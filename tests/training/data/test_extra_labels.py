"""Page points trained together with label rasters: the points win where they speak."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import xy

from training.data.datamodule import LandCoverDataModule


def _points(path: Path, labels: Path, where: list[tuple[int, int]], codes: list[int | None]
            ) -> Path:
    with rasterio.open(labels) as src:
        crs, transform = src.crs, src.transform
    features = []
    for (row, col), code in zip(where, codes, strict=True):
        x, y = xy(transform, row, col)
        features.append({"type": "Feature", "properties": {"label": code},
                         "geometry": {"type": "Point", "coordinates": [x, y]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                                "crs": {"type": "name",
                                        "properties": {"name": crs.to_string()}}}))
    return path


def test_extra_points_override_the_label_raster_only_where_they_give_a_class(
        landscape: Path, tmp_path: Path) -> None:
    labels = sorted((landscape / "labels").glob("labels_*.tif"))[0]
    with rasterio.open(labels) as src:
        raster = src.read(1)
        bounds = src.bounds
    where = [(10, 10), (20, 40), (30, 5)]
    codes = [int(raster[r, c]) % 5 + 1 for r, c in where]  # a class unlike the raster's
    assert all(code != raster[r, c] for (r, c), code in zip(where, codes, strict=True))
    (tmp_path / "page").mkdir()
    _points(tmp_path / "page" / "points.geojson", labels, [*where, (40, 40)],
            [*codes, None])
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"),
                             extra_labels=str(tmp_path / "page"), patch_size=64)
    dataset = dm.build_dataset()
    res = dataset.res[0]
    query = (slice(bounds.left, bounds.left + 64 * res),
             slice(bounds.top - 64 * res, bounds.top),
             slice(dataset.index.index[0].left, dataset.index.index[0].right))
    mask = dataset[query]["mask"].squeeze().numpy()
    expected = raster[:64, :64].astype(np.int64).copy()
    for (row, col), code in zip(where, codes, strict=True):
        expected[row, col] = code
    np.testing.assert_array_equal(mask, expected)  # the null point changed nothing
    assert Path(tmp_path / "page" / "points.geojson") in dm.files()[1]
    xs, _ = dm.label_points(dataset.index.crs)
    assert len(xs) == 3  # the labelled points, not the empty one
