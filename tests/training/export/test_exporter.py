"""Export: checkpoint → ONNX + contract, parity, MLflow registry, BentoML store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio

import training.export.exporter as export_module
from cacaomap.main import main
from serving.inference.contract import load_model_dir

pytestmark = pytest.mark.slow


def test_export_from_run_checks_parity_and_registers(
    trained: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    main(["model", "export", "--run-id", trained["run_id"], "--models-dir",
          str(tmp_path / "models"), "--tile-size", "64", "--overlap", "16"])
    onnx_path, contract = load_model_dir(tmp_path / "models" / "cacaomap" / "v1")
    # Parity on random and on real tiles (the training imagery), fp32.
    assert contract.parity["real_max_abs_logit_diff"] <= 1e-3
    assert contract.parity["random_max_abs_logit_diff"] <= 1e-3
    assert contract.parity["real_argmax_agreement"] >= 0.999
    assert contract.mlflow_run_id == trained["run_id"]
    assert contract.input_dtype == "uint16" and contract.opset == 18
    assert len(contract.dataset_fingerprint or "") == 64
    assert "test_F1_macro" in contract.test_metrics
    client = mlflow.MlflowClient(trained["uri"])
    version = client.get_model_version_by_alias("cacaomap", "candidate")
    assert version.run_id == trained["run_id"]
    import bentoml

    stored = bentoml.models.get("cacaomap:latest")
    assert (Path(stored.path) / "contract.json").read_text() == (
        onnx_path.parent / "contract.json").read_text()
    # Dynamic axes: the model runs at another batch size and tile size.
    from serving.inference.tiles import TileClassifier

    tiles = np.full((3, 10, 96, 96), 900, np.uint16)
    assert TileClassifier(onnx_path, contract).classify(tiles).shape == (3, 96, 96)


def test_failed_export_leaves_no_model(
    trained: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry is down")

    monkeypatch.setattr(export_module, "register_model", refuse)
    models = tmp_path / "models"
    with pytest.raises(RuntimeError, match="registry is down"):
        export_module.export_model(trained["ckpt"], models_dir=models, tile_size=64)
    assert list((models / "cacaomap").iterdir()) == []

    monkeypatch.setattr(export_module, "MAX_ABS_LOGIT_DIFF", -1.0)
    monkeypatch.setattr(export_module, "MAX_REL_LOGIT_DIFF", -1.0)
    with pytest.raises(export_module.ExportError, match="parity failed"):
        export_module.export_model(trained["ckpt"], models_dir=models, tile_size=64,
                                   register=False)
    assert list((models / "cacaomap").iterdir()) == []


def test_offline_classify_cli(trained: dict[str, str], landscape: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    export_module.export_model(trained["ckpt"], models_dir=models, tile_size=64,
                               register=False)
    out = tmp_path / "classes.tif"
    main(["maps", "classify", str(landscape / "images" / "s2l2a_20240820.tif"), "--out", str(out),
          "--model", str(models / "cacaomap")])
    printed = capsys.readouterr().out
    assert "forest" in printed and " ha" in printed
    with rasterio.open(out) as cls:
        assert cls.crs.to_epsg() == 32718 and cls.count == 1
    contract = json.loads((models / "cacaomap" / "v1" / "contract.json").read_text())
    assert contract["parity"]["real_argmax_agreement"] >= 0.999
