"""Fixtures of the training tests: one tiny real training run shared by the session."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from cacaomap.main import main

#: Side and number of the small RGB chips of :func:`chips`.
CHIP = 96
CHIPS = 8


@pytest.fixture(scope="session")
def trained(landscape: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny real training run; its store, run id and best checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        main([
            "train", "fit", "--config", "tests/conf/tiny.yaml",
            "--data.init_args.images", str(landscape / "images"),
            "--data.init_args.labels", str(landscape / "labels"),
            "--trainer.default_root_dir", str(root / "runs"),
            "--trainer.logger.init_args.artifact_location", (root / "art").as_uri(),
        ])
    (run,) = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("cacaomap-test").experiment_id])
    ckpt = next((root / "runs").rglob("epoch=*.ckpt"))
    return {"uri": uri, "run_id": run.info.run_id, "ckpt": str(ckpt), "root": str(root)}


@pytest.fixture(scope="session")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 96-px RGB chips (uint8) with forest / non-forest labels (1 / 4)."""
    root = tmp_path_factory.mktemp("chips")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for k in range(CHIPS):
        forest = np.zeros((CHIP, CHIP), bool)
        forest[:, : 20 + 7 * k] = True
        rgb = np.where(forest, [[[40]], [[90]], [[30]]], [[[150]], [[120]], [[100]]])
        rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
        profile = {"driver": "GTiff", "width": CHIP, "height": CHIP, "crs": "EPSG:4326",
                   "transform": from_origin(-60 + k, -5, 1e-4, 1e-4)}
        with rasterio.open(root / "images" / f"c{k}.tif", "w", count=3, dtype="uint8",
                           **profile) as dst:
            dst.write(rgb)
        with rasterio.open(root / "labels" / f"c{k}.tif", "w", count=1, dtype="uint8",
                           **profile) as dst:
            dst.write(np.where(forest, 1, 4).astype(np.uint8)[None])
    (root / "classes.yaml").write_text(yaml.safe_dump({"nodata": 0, "classes": [
        {"code": 0, "name": "nodata", "colour": "#000000"},
        {"code": 1, "name": "forest", "colour": "#1b7837"},
        {"code": 2, "name": "non_forest", "colour": "#d9b365"}]}))
    return root
