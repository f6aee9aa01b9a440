"""Real training runs (a few steps) against a real sqlite MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from cacaomap.main import main

pytestmark = pytest.mark.slow


def _fit(landscape: Path, store: dict[str, str], *extra: str) -> None:
    main([
        "train", "fit", "--config", "tests/conf/tiny.yaml",
        "--data.init_args.images", str(landscape / "images"),
        "--data.init_args.labels", str(landscape / "labels"),
        "--trainer.default_root_dir", store["root"],
        "--trainer.logger.init_args.artifact_location", store["artifacts"],
        *extra,
    ])


def _runs(store: dict[str, str]) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(store["uri"])
    exp = client.get_experiment_by_name("cacaomap-test")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time"])


def test_fit_logs_params_per_class_metrics_and_figures(
    landscape: Path, mlflow_store: dict[str, str]
) -> None:
    _fit(landscape, mlflow_store)
    (run,) = _runs(mlflow_store)
    client = mlflow.MlflowClient(mlflow_store["uri"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert len(params["lineage.dataset_fingerprint"]) == 64
    assert params["lineage.bands"] == "B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12"
    assert params["lineage.classes"].startswith("nodata,forest,cocoa_agroforestry")
    assert params["backbone"] == "resnet18" and params["num_classes"] == "6"
    assert len(run.data.tags["git_sha"]) >= 7
    metrics = run.data.metrics
    for split in ("val", "test"):
        for name in ("IoU", "F1", "precision", "recall"):
            assert f"{split}_{name}_macro" in metrics
            for cls in ("forest", "cocoa_agroforestry", "oil_palm", "degraded", "other"):
                assert f"{split}_{name}_{cls}" in metrics
    assert 0.0 <= metrics["test_IoU_macro"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "normalization.json", "classes.json"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures/test")}
    assert figures == {"figures/test/confusion_final.png", "figures/test/overlay_final.png"}
    local = Path(client.download_artifacts(run.info.run_id, "figures/test/overlay_final.png"))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = [a.path for a in client.list_artifacts(run.info.run_id)
                   if a.is_dir and a.path.startswith(("epoch", "last"))]
    assert checkpoints, "the best checkpoint is logged to the run"


def test_resume_and_fine_tune_from_a_checkpoint(
    landscape: Path, mlflow_store: dict[str, str]
) -> None:
    _fit(landscape, mlflow_store)
    last = next(Path(mlflow_store["root"]).rglob("last.ckpt"))
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0
    assert "statistics" in state["LandCoverDataModule"]

    # Resume: training continues at the next epoch from the checkpoint's state, in the
    # same MLflow run.
    _fit(landscape, mlflow_store, "--trainer.max_epochs", "2", "--ckpt_path", str(last))
    (first,) = _runs(mlflow_store)
    assert first.info.status == "FINISHED"
    resumed = sorted(Path(mlflow_store["root"]).rglob("last*.ckpt"),
                     key=lambda p: p.stat().st_mtime)[-1]
    assert torch.load(resumed, map_location="cpu", weights_only=False)["epoch"] == 1

    # Fine-tune: a new run starts from the previous weights (the retraining path).
    _fit(landscape, mlflow_store, "--model.init_args.weights", str(last),
         "--trainer.limit_train_batches", "0", "--trainer.limit_val_batches", "0")
    runs = _runs(mlflow_store)
    assert len(runs) == 2 and runs[0].info.run_id == first.info.run_id
    assert runs[-1].data.params["lineage.init_weights"] == str(last)
    assert int(runs[-1].data.params["lineage.init_tensors_loaded"]) > 100


def test_weights_must_be_a_local_file(landscape: Path, mlflow_store: dict[str, str]) -> None:
    # A user error: the command ends with one line naming it (cacaomap train fit: ...).
    with pytest.raises(SystemExit, match="weights must be a local file"):
        _fit(landscape, mlflow_store, "--model.init_args.weights", "ResNet18_Weights.SENTINEL2")


def test_the_recipe_choices_train_together(landscape: Path,
                                           mlflow_store: dict[str, str]) -> None:
    _fit(landscape, mlflow_store, "--trainer.max_epochs", "2",
         "--model.init_args.loss", "ce+dice", "--model.init_args.lr_schedule", "cosine",
         "--model.init_args.warmup_epochs", "0.5", "--data.init_args.brightness", "0.02",
         "--data.init_args.contrast", "0.1", "--trainer.callbacks+",
         "lightning.pytorch.callbacks.LearningRateMonitor",
         "--trainer.callbacks.logging_interval", "step")
    (run,) = _runs(mlflow_store)
    assert run.data.params["loss"] == "ce+dice"
    assert "test_IoU_macro" in run.data.metrics
    client = mlflow.MlflowClient(mlflow_store["uri"])
    lrs = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr-AdamW"),
                                   key=lambda m: m.step)]
    # 2 epochs of 4 steps: warm-up over the first 2 steps, then cosine down to 1% of lr
    assert lrs[0] == pytest.approx(0.5e-3) and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] < 0.2e-3
