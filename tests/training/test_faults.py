"""Faults: killed training, killed export, interrupted report writes. Nothing is lost.

Each fault is real: processes are killed with SIGKILL (no handler can run), and the
state left behind is what a user would find.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from serving.inference.contract import ContractError, load_model_dir
from serving.inference.model_store import resolve_model_dir
from tests.service_helpers import REPO, show_table

pytestmark = pytest.mark.slow
CACAOMAP = str(Path(sys.executable).with_name("cacaomap"))
EPOCHS = "3"


def _train_cmd(landscape: Path, root: Path, *extra: str) -> list[str]:
    return [CACAOMAP, "train", "fit", "--config", "tests/conf/tiny.yaml",
            "--data.init_args.images", str(landscape / "images"),
            "--data.init_args.labels", str(landscape / "labels"),
            "--data.init_args.length", "64",
            "--trainer.default_root_dir", str(root),
            "--trainer.logger.init_args.artifact_location", (root / "art").as_uri(),
            "--trainer.max_epochs", EPOCHS, *extra]


def _env(store: Path) -> dict[str, str]:
    return os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}",
                         "BENTOML_HOME": str(store.parent / "bentoml"),
                         "BENTOML_DO_NOT_TRACK": "true"}


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen[bytes],
              timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.rglob(pattern))
        if found:
            return found[0]
        assert proc.poll() is None, f"process ended ({proc.returncode}) before {pattern}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} under {root} in {timeout} s")


def _runs(store: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("cacaomap-test")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time"])


def test_killed_training_resumes_in_its_run_to_the_same_metrics(
    landscape: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reference: the same training, never interrupted.
    ref_store = tmp_path / "ref" / "mlflow.db"
    ref_store.parent.mkdir()
    subprocess.run(_train_cmd(landscape, tmp_path / "ref" / "runs"), env=_env(ref_store),
                   cwd=REPO, check=True, capture_output=True, timeout=900)
    (reference,) = _runs(ref_store)

    store = tmp_path / "killed" / "mlflow.db"
    store.parent.mkdir()
    root = tmp_path / "killed" / "runs"
    proc = subprocess.Popen(_train_cmd(landscape, root), env=_env(store), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = _wait_for("last.ckpt", root, proc)  # epoch 0 done: now inside epoch 1
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (killed,) = _runs(store)
    assert killed.info.status == "RUNNING"  # nothing could record the end

    # Another training on this host finds the orphan and marks it FAILED.
    subprocess.run(_train_cmd(landscape, tmp_path / "other", "--trainer.max_epochs", "1",
                              "--trainer.limit_test_batches", "0"),
                   env=_env(store), cwd=REPO, check=True, capture_output=True, timeout=900)
    orphan = next(r for r in _runs(store) if r.info.run_id == killed.info.run_id)
    assert orphan.info.status == "FAILED"
    assert "was gone" in orphan.data.tags["cacaomap.ended_by"]

    # Resume from the last checkpoint: the same run continues and finishes.
    subprocess.run(_train_cmd(landscape, root, "--ckpt_path", str(last)), env=_env(store),
                   cwd=REPO, check=True, capture_output=True, timeout=900)
    resumed = next(r for r in _runs(store) if r.info.run_id == killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in _runs(store))
    rows = []
    for name in ("test_IoU_macro", "test_F1_macro", "test_loss"):
        a, b = reference.data.metrics[name], resumed.data.metrics[name]
        rows.append([name, f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"])
    show_table(capsys, f"SIGKILL in epoch 1 of {EPOCHS}, resumed from last.ckpt",
               ["metric", "uninterrupted", "killed + resumed", "difference"], rows,
               "resume.json")
    for name in ("test_IoU_macro", "test_F1_macro"):
        assert resumed.data.metrics[name] == pytest.approx(reference.data.metrics[name],
                                                           abs=0.05)


def test_killed_export_leaves_no_model(landscape: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    subprocess.run(_train_cmd(landscape, tmp_path / "runs", "--trainer.max_epochs", "1"),
                   env=_env(store), cwd=REPO, check=True, capture_output=True, timeout=900)
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    models = tmp_path / "models"
    export = [CACAOMAP, "model", "export", "--checkpoint", str(ckpt), "--models-dir", str(models),
              "--tile-size", "64", "--overlap", "16"]
    proc = subprocess.Popen(export, env=_env(store), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(".export-*/model.onnx", models, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    root = models / "cacaomap"
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(ContractError, match="no exported model"):
        resolve_model_dir(root)

    # The next export completes, and sweeps the killed one's folder.
    subprocess.run(export, env=_env(store), cwd=REPO, check=True, capture_output=True,
                   timeout=900)
    assert sorted(p.name for p in root.iterdir()) == ["v1"]
    load_model_dir(root / "v1")


def test_report_write_is_all_or_nothing(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.files as files_module

    target = tmp_path / "report.json"
    files_module.write_bytes_atomic(target, json.dumps({"v": 1}).encode())

    def crash(src: str, dst: str) -> None:  # the process dies between write and rename
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        files_module.write_bytes_atomic(target, json.dumps({"v": 2}).encode())
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
