"""The synthetic time series: a STAC catalogue shaped like real Sentinel-2 L2A."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from serving.imagery.composite import write_composite
from serving.imagery.harmonise import boa_offset
from serving.imagery.sources import in_period, items_from_file, load_items
from training.synthetic import LandscapeConfig
from training.synthetic.spectra import S2_BANDS
from training.synthetic.time_series import generate_time_series


def test_catalogue_of_acquisitions_composes_to_the_truth(tmp_path: Path) -> None:
    config = LandscapeConfig(size=128, seed=2, acquisitions=3)
    out = generate_time_series(tmp_path / "ts", config, progress=False)
    items = items_from_file(out / "stac" / "catalog.json")
    assert len(items) == 6
    first = items[0]
    with rasterio.open(first.assets["B02"].href) as b02, \
            rasterio.open(first.assets["B11"].href) as b11, \
            rasterio.open(first.assets["SCL"].href) as scl:
        assert b02.res == (10, 10) and b11.res == (20, 20) and scl.res == (20, 20)
        assert b02.crs == config.crs and set(np.unique(scl.read(1))) <= set(range(12))
    truth = json.loads((out / "truth.json").read_text())
    for date, baseline, offset in ((config.dates[0], "02.09", 0.0),
                                   (config.dates[1], "05.10", -1000.0)):
        period = truth["periods"][date]
        chosen = in_period(items, period)
        assert len(chosen) == 3
        assert {i.properties["s2:processing_baseline"] for i in chosen} == {baseline}
        assert {boa_offset(i.properties, i.assets["B04"].to_dict()) for i in chosen} == {
            offset}
        loaded = load_items(chosen, list(S2_BANDS), cloud_buffer=0)
        composite = write_composite(loaded, tmp_path / f"c_{date}.tif", period=period)
        with rasterio.open(composite.path) as src, \
                rasterio.open(out / "labels" / f"labels_{date}.tif") as lab:
            count = src.read(src.count)
            labels = lab.read(1)
            red = src.read(3)
        # Never seen by SCL ~ never seen in truth (the SCL is coarser and conservative).
        disagree = ((count == 0) != (labels == 0)).mean()
        assert disagree < 0.05
        # Harmonised: forest is dark in red at both baselines (no +1000 left over).
        forest = (labels == 1) & (count > 0)
        assert 100 < np.median(red[forest]) < 700
