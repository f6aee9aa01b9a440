"""A shared MLflow tracking server (SQL backend + artifact root) on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

from cacaomap.main import main
from serving.http.local_server import free_port, served_model
from serving.inference.contract import load_model_dir
from training.export.registry import resolve_model_uri

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
         str(port), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server not ready in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_train_export_register_and_serve_through_the_server(
    tracking_server: str, landscape: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    main(["train", "fit", "--config", "tests/conf/tiny.yaml",
          "--data.init_args.images", str(landscape / "images"),
          "--data.init_args.labels", str(landscape / "labels"),
          "--trainer.default_root_dir", str(tmp_path / "runs")])
    client = mlflow.MlflowClient(tracking_server)
    (run,) = client.search_runs([client.get_experiment_by_name("cacaomap-test")
                                 .experiment_id])
    # Artifacts went through the server (proxied), not to a local path of ours.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "figures" in {a.path for a in client.list_artifacts(run.info.run_id)}

    main(["model", "export", "--run-id", run.info.run_id, "--models-dir", str(tmp_path / "m1"),
          "--tile-size", "64", "--alias", "champion"])
    version = client.get_model_version_by_alias("cacaomap", "champion")
    assert version.run_id == run.info.run_id

    # models:/name@alias resolves to the exact exported files, hash-checked ...
    folder = resolve_model_uri("models:/cacaomap@champion", tmp_path / "m2")
    _, contract = load_model_dir(folder)
    _, original = load_model_dir(tmp_path / "m1" / "cacaomap" / "v1")
    assert contract.onnx_sha256 == original.onnx_sha256
    # ... even where this machine has another model of its own as "v1"
    from tests.model_factory import write_local_model

    write_local_model(tmp_path / "m4" / "cacaomap" / "v1", tile_size=64)
    other = resolve_model_uri("models:/cacaomap@champion", tmp_path / "m4")
    assert other != tmp_path / "m4" / "cacaomap" / "v1"
    assert load_model_dir(other)[1].onnx_sha256 == original.onnx_sha256
    # ... and export from the alias re-exports the same run.
    main(["model", "export", "--run-id", "models:/cacaomap@champion", "--models-dir",
          str(tmp_path / "m3"), "--tile-size", "64", "--no-register"])
    assert load_model_dir(tmp_path / "m3" / "cacaomap" / "v1")[1].mlflow_run_id == \
        run.info.run_id
    with served_model(folder) as url:
        served = httpx.post(f"{url}/model", json={}, timeout=30).json()
    assert served["onnx_sha256"] == original.onnx_sha256
