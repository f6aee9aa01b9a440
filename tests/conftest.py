"""Shared fixtures: a generated landscape and an isolated MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.synthetic import LandscapeConfig, generate_landscape

REPO = Path(__file__).resolve().parent.parent
#: The store fixtures (a region's imagery, a model, a built store).
pytest_plugins = ["tests.store_fixtures", "tests.stac_api"]
TEST_SCENE_SIZE = 256


@pytest.fixture(scope="session")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 px two-date landscape with label rasters, polygons and plots."""
    out = tmp_path_factory.mktemp("landscape") / "scene"
    return generate_landscape(out, LandscapeConfig(size=TEST_SCENE_SIZE, seed=3),
                              progress=False)


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh sqlite MLflow store and artifact root, exported as the env default."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = (tmp_path / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return {"uri": uri, "artifacts": artifacts, "root": str(tmp_path / "runs")}
