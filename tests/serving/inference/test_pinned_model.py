"""A served model is who it says: ``CACAOMAP_MODEL_SHA256`` pins the ONNX file's sha256."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.files import sha256_file
from serving.inference.contract import ContractError
from serving.inference.model_store import check_pinned
from serving.settings import Settings, SettingsError
from tests.model_factory import write_local_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("pinned") / "v1")


def test_the_pinned_hash_passes_another_is_refused_naming_both(model: Path) -> None:
    actual = sha256_file(model / "model.onnx")
    assert check_pinned(model, actual) == model
    with pytest.raises(ContractError, match=f"sha256 {actual[:12]}.*not the pinned "
                                            "CACAOMAP_MODEL_SHA256 0000000000"):
        check_pinned(model, "0" * 64)
    with pytest.raises(SettingsError, match="MODEL_SHA256 must be a sha256"):
        Settings.from_env({"CACAOMAP_MODEL_SHA256": "abc"})


def test_a_command_refuses_a_model_that_is_not_the_pinned_one(model: Path,
                                                               tmp_path: Path) -> None:
    import numpy as np

    from tests.serving.references.test_layers import write

    scene = write(tmp_path / "scene.tif", np.ones((64, 64), np.uint16))
    env = os.environ | {"CACAOMAP_MODEL_SHA256": "f" * 64}
    run = subprocess.run([sys.executable, "-m", "cacaomap", "maps", "classify", str(scene),
                          "--model", str(model)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("cacaomap maps classify: the model at ")
    assert "not the pinned CACAOMAP_MODEL_SHA256 ffffffffffff" in run.stderr


def test_the_default_model_root_is_absolute_wherever_the_service_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``models/cacaomap/v999`` planted in the working directory is never served."""
    from serving.inference import model_store
    from tests.service_helpers import REPO

    assert model_store.MODELS_DIR == REPO / "models"  # a checkout: its committed folder
    installed = tmp_path / "site-packages" / "models"  # no README: not a checkout
    assert model_store.default_models_dir({"XDG_DATA_HOME": "/srv/data"}, installed) == \
        Path("/srv/data/cacaomap/models")
    assert model_store.default_models_dir({"XDG_DATA_HOME": "relative", "HOME": "/home/u"},
                                          installed) == \
        Path("/home/u/.local/share/cacaomap/models")
    write_local_model(tmp_path / "models" / "cacaomap" / "v999")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_store, "MODELS_DIR", tmp_path / "empty")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # an empty store
    with pytest.raises(ContractError, match="empty"):
        model_store.resolve_model_dir(None)
