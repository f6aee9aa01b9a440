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


def test_cloud_model_on_a_synthetic_acquisition_reports_its_iou() -> None:
    """The ukis-csmask model against the generator's own clouds and shadows (a figure).

    Printed, not a gate: the synthetic clouds are generic bright haze-free blobs; what
    the figure tracks is that the model finds them at all (IoU well above chance).
    """
    from serving.imagery.masks import csmask_clear
    from training.synthetic.landscape import Landscape

    land = Landscape(LandscapeConfig(size=256, seed=4, acquisitions=2))
    strip = land.render_acquisition(0, 256, 0, 1)
    pick = [S2_BANDS.index(b) for b in ("B02", "B03", "B04", "B08", "B11", "B12")]
    clear = csmask_clear(strip.image[pick] / 10000, ["B02", "B03", "B04", "B08", "B11",
                                                     "B12"], invalid_buffer=0)
    truth = ((strip.cloud > 0) | strip.shadow) & ~strip.outside
    found = ~clear & ~strip.outside
    iou = (found & truth).sum() / max(1, (found | truth).sum())
    print(f"ukis-csmask cloud+shadow IoU on a synthetic acquisition: {iou:.3f} "
          f"(truth {truth.mean():.1%} of pixels, model {found.mean():.1%})")
    assert iou > truth.mean()  # better than calling everything cloud
