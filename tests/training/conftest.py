"""Fixtures of the training tests: one tiny real training run shared by the session."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from training.cli import main


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
