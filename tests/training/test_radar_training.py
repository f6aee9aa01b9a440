"""A model trained on optical + radar bands: exported with parity, classifying from radar."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cacaomap.main import main
from serving.imagery.composite import write_composite
from serving.imagery.sources import in_period, items_from_file, load_items
from serving.inference.scene import classify_scene
from serving.inference.tiles import TileClassifier
from serving.radar.acquisitions import describe
from serving.radar.stack import stack_radar
from serving.radar.statistics import RADAR_BANDS, RADAR_COUNT_BAND
from training.export.exporter import export_model
from training.synthetic.spectra import S2_BANDS

PERIOD = "2020-01-01/2020-12-31"


@pytest.fixture(scope="module")
def stacked_data(region_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The region's 2020 composite with its radar stacked, and the 2020 labels."""
    root = tmp_path_factory.mktemp("s1s2")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    items = in_period(items_from_file(region_data / "stac" / "catalog.json"), PERIOD)
    optical = write_composite(load_items(items, list(S2_BANDS)), root / "optical.tif",
                              period=PERIOD, date="20201215").path
    radar = [describe(p) for p in sorted((region_data / "radar").glob("*2020*.tif"))]
    stack_radar(optical, radar, root / "images" / "s1s2_20201215.tif", period=PERIOD)
    shutil.copy(region_data / "labels" / "labels_20201215.tif", root / "labels")
    return root


def test_a_model_on_stacked_bands_trains_exports_and_classifies_from_radar_alone(
        stacked_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    bands = [*S2_BANDS, *RADAR_BANDS]
    everything = [*S2_BANDS, "clear_count", *RADAR_BANDS, RADAR_COUNT_BAND]
    main(["train", "fit", "--config", "tests/conf/tiny.yaml",
          "--data.init_args.images", str(stacked_data / "images"),
          "--data.init_args.labels", str(stacked_data / "labels"),
          "--data.init_args.image_glob", "s1s2_*.tif",
          "--data.init_args.all_bands", f"[{','.join(everything)}]",
          "--data.init_args.bands", f"[{','.join(bands)}]",
          "--trainer.default_root_dir", str(tmp_path / "runs"),
          "--trainer.logger.init_args.artifact_location", (tmp_path / "art").as_uri()])
    checkpoint = next((tmp_path / "runs").rglob("epoch=*.ckpt"))
    # Export checks ONNX Runtime against PyTorch on real stacked tiles, pixels seen by
    # radar alone among them: each fills its sensors the same way, or this raises.
    model_dir = export_model(checkpoint, name="s1s2", models_dir=tmp_path / "models",
                             register=False, tile_size=64, overlap=16)
    classifier = TileClassifier.from_model_dir(model_dir)
    assert classifier.contract.bands == bands
    scene = stacked_data / "images" / "s1s2_20201215.tif"
    with rasterio.open(scene) as src:
        names = list(src.descriptions)
        radar_only = ((src.read(names.index("clear_count") + 1) == 0)
                      & (src.read(names.index(RADAR_COUNT_BAND) + 1) > 0))
        classify_scene(src, tmp_path / "classes.tif", classifier)
    with rasterio.open(tmp_path / "classes.tif") as out:
        codes = out.read(1)
    assert radar_only.any()
    assert (codes[radar_only] != 0).all()  # classified from radar where optical saw none
    assert np.isin(codes[radar_only], [1, 2, 3, 4, 5]).all()
